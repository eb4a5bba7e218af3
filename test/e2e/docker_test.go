//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/test/testutil"
)

// dockerTools are the programs the Docker suite needs that are built from this repository
// or the Go module proxy (make e2e-docker builds them into bin/).
func dockerTools(t *testing.T) testutil.DockerOptions {
	t.Helper()
	bin := filepath.Join(testutil.RepoRoot(t), "bin")
	o := testutil.DockerOptions{RuncHostcaps: filepath.Join(bin, "runc-hostcaps"), ComposePlugin: filepath.Join(bin, "docker-compose")}
	for _, p := range []string{o.RuncHostcaps, o.ComposePlugin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run make e2e-docker (it builds bin/runc-hostcaps and bin/docker-compose)", p)
		}
	}
	return o
}

// TestAPrivateDockerEngineRunsPrivilegedContainers starts the suite's private Docker engine
// and runs what kind nodes need of it: a privileged container, and docker exec into it.
// On a machine whose capability bounding set is short, that works only through hostcaps.
func TestAPrivateDockerEngineRunsPrivilegedContainers(t *testing.T) {
	d := testutil.StartDocker(t, dockerTools(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	image := importStatic(t, d, "regwire-e2e/caps:1", capsProgram)
	plain, err := d.Docker(ctx, "run", "--rm", image)
	if err != nil {
		t.Fatal(err)
	}
	privileged, err := d.Docker(ctx, "run", "--rm", "--privileged", image)
	if err != nil {
		t.Fatalf("a privileged container (runtime %s): %v", d.Runtime, err)
	}
	t.Logf("effective capabilities: %s plain, %s privileged (runtime %s)", strings.TrimSpace(plain), strings.TrimSpace(privileged), d.Runtime)
	if strings.TrimSpace(plain) == strings.TrimSpace(privileged) {
		t.Error("the privileged container has no more capabilities than a plain one")
	}
	if _, err := d.Docker(ctx, "run", "-d", "--privileged", "--name", "node", image, "wait"); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Docker(ctx, "exec", "node", "/hello"); err != nil || strings.TrimSpace(out) != strings.TrimSpace(privileged) {
		t.Fatalf("docker exec into the privileged container: %q %v, want %s", out, err, privileged)
	}
}

// capsProgram prints its effective capabilities, then, given an argument, stays up.
const capsProgram = `package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			fmt.Println(strings.TrimSpace(v))
		}
	}
	for len(os.Args) > 1 {
		time.Sleep(time.Hour)
	}
}
`

// importStatic builds prog as a static program /hello and imports it as image ref.
func importStatic(t *testing.T, d *testutil.Docker, ref, prog string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", "hello", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(bin)
	_ = tw.Close()
	cmd := exec.Command("docker", "import", "-c", `ENTRYPOINT ["/hello"]`, "-", ref)
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	return ref
}

// TestTheRegistryHalfOfBootstrapUpOnARealDockerEngine runs `regwire bootstrap up
// --registry-only` on the suite's private Docker engine with images built here (the Nexus
// emulator, Debian's nginx): Compose brings both up and waits for Nexus's health check,
// the initial admin password is read with docker compose exec and replaced, the repository
// is provisioned with path-based routing; then an image is pushed through nginx to
// nexus.local/my-docker/… and pulled back. A second up changes nothing; down leaves no
// container, network or volume.
func TestTheRegistryHalfOfBootstrapUpOnARealDockerEngine(t *testing.T) {
	d := testutil.StartDocker(t, dockerTools(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	work := t.TempDir()
	loadImages(t, d, "nginx.tar", "nexus.tar")
	regwire := buildRegwire(t, work)
	state := filepath.Join(work, "state")
	regwireIn := func(args ...string) string {
		t.Helper()
		begun := time.Now()
		cmd := d.Command(ctx, regwire, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("regwire %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("regwire %s (%s):\n%s", args[1], time.Since(begun).Round(time.Second), out)
		return string(out)
	}
	up := []string{"bootstrap", "up", "--registry-only", "--state-dir", state, "--timeout", "3m",
		"--nexus-image", "regwire-e2e/nexus:emulated", "--nginx-image", "regwire-e2e/nginx:bookworm"}
	first := regwireIn(up...)
	if !strings.Contains(first, "set a generated one") || !strings.Contains(first, "repository my-docker created") {
		t.Errorf("the first up did not replace Nexus's initial password and create the repository:\n%s", first)
	}

	compose := []string{"compose", "--project-name", "regwire", "--file", filepath.Join(state, "docker-compose.yaml")}
	ps, err := d.Docker(ctx, append(compose, "ps", "--format", "{{.Service}} {{.State}} {{.Health}}")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nexus running healthy", "proxy running"} {
		if !strings.Contains(ps, want) {
			t.Errorf("compose ps lacks %q:\n%s", want, ps)
		}
	}
	// Nexus deleted its initial password when it changed; the new one is kept, 0600.
	if _, err := d.Docker(ctx, append(compose, "exec", "-T", "nexus", "test", "!", "-e", "/nexus-data/admin.password")...); err != nil {
		t.Errorf("/nexus-data/admin.password is still there after the change: %v", err)
	}
	pwFile := filepath.Join(state, "nexus-admin-password")
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(pwFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", pwFile, fi.Mode().Perm())
	}
	ca, err := os.ReadFile(filepath.Join(state, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// A push through nginx to nexus.local/my-docker/…, then a pull, as a laptop would.
	tr := d.Transport(ca)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		return d.DialContext(ctx, network, "127.0.0.1:"+port) // nexus.local is the proxy
	}
	opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "admin", Password: strings.TrimSpace(string(pw))})}
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := testutil.Ref(t, "nexus.local/my-docker/hello:1.0")
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push through nginx: %v", err)
	}
	want, _ := img.Digest()
	got, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull through nginx: %v", err)
	}
	if d, _ := got.Digest(); d != want {
		t.Fatalf("pulled %s, pushed %s", d, want)
	}
	if _, err := remote.Image(ref, remote.WithTransport(tr)); err == nil {
		t.Error("an anonymous pull succeeded")
	}
	t.Logf("pushed and pulled %s (%s) through nginx and the Nexus emulator", ref, want)

	// Again: what exists is kept — the same containers, the password, the repository.
	before, _ := d.Docker(ctx, "ps", "-q", "--no-trunc")
	again := regwireIn(up...)
	if strings.Contains(again, "set a generated one") || !strings.Contains(again, "repository my-docker unchanged") {
		t.Errorf("the second up changed something:\n%s", again)
	}
	if after, _ := d.Docker(ctx, "ps", "-q", "--no-trunc"); after != before {
		t.Errorf("the second up replaced containers: %q, then %q", before, after)
	}
	if b, _ := os.ReadFile(pwFile); string(b) != string(pw) {
		t.Error("the second up changed the kept password")
	}
	status := regwireIn("bootstrap", "status", "--state-dir", state)
	for _, want := range []string{"nexus", "proxy"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q", want)
		}
	}

	regwireIn("bootstrap", "down", "--state-dir", state)
	if out, _ := d.Docker(ctx, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after down: %s", out)
	}
	if out, _ := d.Docker(ctx, "volume", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("volumes left after down: %s", out)
	}
	if out, _ := d.Docker(ctx, "network", "ls", "--format", "{{.Name}}"); strings.Join(strings.Fields(out), " ") != "bridge host none" {
		t.Errorf("networks after down: %s, want only Docker's own", out)
	}
}

// loadImages loads image tarballs that make e2e-images built.
func loadImages(t *testing.T, d *testutil.Docker, names ...string) {
	t.Helper()
	for _, n := range names {
		path := filepath.Join(testutil.RepoRoot(t), "bin", "e2e-images", n)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s is missing: run make e2e-images", path)
		}
		if out, err := d.Docker(context.Background(), "load", "-i", path); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("docker load %s: %s", n, strings.TrimSpace(out))
		}
	}
}

// TestTheKindNodeBaseImageBootsHere runs the kind node base image the suite builds (kind's
// base Dockerfile, assembled from Debian's packages and binaries built from the module
// proxy) the way kind runs a node: privileged, with kind's entrypoint and systemd as PID 1.
// systemd must come up, with containerd active and answering.
func TestTheKindNodeBaseImageBootsHere(t *testing.T) {
	d := testutil.StartDocker(t, dockerTools(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	loadImages(t, d, "kind-base.tar")
	// kind's docker provider's arguments for a node (pkg/cluster/internal/providers/docker).
	if _, err := d.Docker(ctx, "run", "-d", "--name", "node", "--hostname", "node",
		"--privileged", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--tmpfs", "/tmp", "--tmpfs", "/run", "--volume", "/var", "--init=false", "--cgroupns=private",
		"regwire-e2e/kind-base:bookworm"); err != nil {
		t.Fatal(err)
	}
	var state string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := d.Docker(ctx, "exec", "node", "systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	logs, _ := d.Docker(ctx, "logs", "node")
	failed, _ := d.Docker(ctx, "exec", "node", "systemctl", "--failed", "--no-legend")
	t.Logf("systemd: %s; failed units: %q", state, strings.TrimSpace(failed))
	if state != "running" && state != "degraded" {
		t.Fatalf("systemd did not come up (%q); node log:\n%s", state, logs)
	}
	if out, err := d.Docker(ctx, "exec", "node", "systemctl", "is-active", "containerd"); strings.TrimSpace(out) != "active" {
		t.Fatalf("containerd: %q %v; node log:\n%s", out, err, logs)
	}
	if out, err := d.Docker(ctx, "exec", "node", "ctr", "version"); err != nil || !strings.Contains(out, "Server:") {
		t.Fatalf("ctr version: %v\n%s", err, out)
	}
	if out, err := d.Docker(ctx, "exec", "node", "crictl", "info"); err != nil {
		t.Fatalf("crictl info: %v\n%s", err, out)
	}
}
