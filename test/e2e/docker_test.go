//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/testutil"
)

// dockerTools are the programs the Docker suite needs that are built from this repository
// or the Go module proxy (make e2e-docker builds them into bin/).
func dockerTools(t *testing.T) testutil.DockerOptions {
	t.Helper()
	bin := filepath.Join(testutil.RepoRoot(t), "bin")
	o := testutil.DockerOptions{Capfit: filepath.Join(bin, "capfit"), ComposePlugin: filepath.Join(bin, "docker-compose")}
	for _, p := range []string{o.Capfit, o.ComposePlugin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run make e2e-docker (it builds bin/capfit and bin/docker-compose)", p)
		}
	}
	return o
}

// TestAPrivateDockerEngineRunsPrivilegedContainers starts the suite's private Docker engine
// and runs what kind nodes need of it: a privileged container, and docker exec into it.
// On a machine whose capability bounding set is short, that works only through capfit.
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
