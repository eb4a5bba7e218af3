//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/test/nexusemulator"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestOneMirrorWiresEveryRuntime applies one RegistryMirror with `regwire node apply` in
// each runtime's format and lets each runtime's real client pull through it:
// containerd (CRI), podman and skopeo (registries.conf.d + certs.d, Debian's packages)
// and Docker Engine (/etc/docker/certs.d, Debian's docker.io). Everything runs in one
// private network namespace, where "Nexus" answers as nexus.local on port 443 and a
// counting stand-in answers as Docker Hub; each client sees private /etc/hosts,
// /etc/containers and /etc/docker/certs.d through its own mount namespace.
//
// Then the air-gap guarantee: with mirrorOf docker.io and skipFallback, containerd and
// podman pull docker.io/library/hello from the mirror; with the mirror stopped the pulls
// fail and the Docker Hub stand-in sees no connection. Without skipFallback the same
// pulls do reach it, which proves it would have counted.
func TestOneMirrorWiresEveryRuntime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the test runs dockerd, containerd and podman in private namespaces: run it as root (CI does)")
	}
	for _, tool := range []string{"podman", "skopeo", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: apt-get install podman skopeo util-linux (.ci/run does)", tool)
		}
	}
	ctx := context.Background()
	l := newLogs(t)
	work := t.TempDir()
	regwire := buildRegwire(t, work)
	const user, password = "admin", "e2e-runtimes-password"

	// The private files each client sees in place of the machine's.
	hosts := filepath.Join(work, "hosts")
	writeFile(t, hosts, "127.0.0.1 localhost nexus.local\n127.0.0.2 registry-1.docker.io docker.io index.docker.io\n")
	containers := filepath.Join(work, "containers") // /etc/containers
	writeFile(t, filepath.Join(containers, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`+"\n")
	writeFile(t, filepath.Join(containers, "registries.conf"), "unqualified-search-registries = [\"docker.io\"]\n")
	writeFile(t, filepath.Join(containers, "registries.conf.d", "000-shortnames.conf"), "[aliases]\n\"hello\" = \"docker.io/library/hello\"\n")
	dockerEtc := filepath.Join(work, "docker") // /etc/docker (Debian's docker.io makes it)
	dockerCerts := filepath.Join(dockerEtc, "certs.d")
	writeFile(t, filepath.Join(dockerCerts, "quay.io", "ca.crt"), testutil.SampleCAPEM)
	containerdCerts := filepath.Join(work, "containerd-certs.d") // containerd's config_path
	writeFile(t, filepath.Join(containerdCerts, "quay.io", "hosts.toml"), "server = \"https://quay.io\"\n")
	foreign := map[string]map[string]string{}
	for _, dir := range []string{containers, dockerCerts, containerdCerts} {
		foreign[dir] = testutil.Snapshot(t, dir)
	}

	d := testutil.StartDocker(t, testutil.DockerOptions{
		RuncHostcaps: filepath.Join(testutil.RepoRoot(t), "bin", "runc-hostcaps"),
		Mounts:       map[string]string{"/etc/hosts": hosts, "/etc/docker": dockerEtc},
	})
	l.add("dockerd", d.Log)

	// "Nexus": the emulator with two docker repositories, my-docker and docker-proxy
	// (standing in for a proxy of Docker Hub), both with path-based routing.
	nx := nexusemulator.New(password)
	l.add("nexus requests", stringer(func() string { return strings.Join(nx.Requests(), "\n") }))
	admin := httptest.NewServer(nx) // on the machine's loopback, to seed it
	t.Cleanup(admin.Close)
	nc, err := nexus.New(admin.URL, user, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"my-docker", "docker-proxy"} {
		if _, err := nc.EnsureDockerHosted(ctx, &nexus.DockerHostedRepository{
			Name: repo, Online: true,
			Storage: nexus.HostedStorage{BlobStoreName: "default", StrictContentTypeValidation: true, WritePolicy: nexus.WritePolicyAllow},
			Docker:  nexus.Docker{ForceBasicAuth: true, PathEnabled: new(true)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	upstream := testutil.StartRegistry(t, testutil.RegistryOptions{})
	helloImage(t, upstream.Host+"/library/hello:1.0", helloLine, runtimeArch())
	seed := strings.TrimPrefix(admin.URL, "http://")
	for _, dst := range []string{seed + "/my-docker/hello:1.0", seed + "/docker-proxy/library/hello:1.0"} {
		copyImage(t, upstream.Host+"/library/hello:1.0", dst, &authn.Basic{Username: user, Password: password})
	}

	// nexus.local:443 inside the namespace, with the bootstrap's CA and certificate.
	tlsDir := filepath.Join(work, "tls")
	pki, err := bootstrap.EnsurePKI(tlsDir, bootstrap.PKIOptions{DNSNames: []string{"nexus.local"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, bootstrap.ServerCertFile), filepath.Join(tlsDir, bootstrap.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := d.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	mirror := &httptest.Server{Listener: ln, Config: &http.Server{Handler: nx, ReadHeaderTimeout: 10 * time.Second},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	mirror.StartTLS()
	t.Cleanup(mirror.Close)
	// Docker Hub's stand-in counts every connection made to it and answers none.
	hub, err := d.Listen("tcp", "127.0.0.2:443")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	var hubConns atomic.Int64
	go func() {
		for {
			c, err := hub.Accept()
			if err != nil {
				return
			}
			hubConns.Add(1)
			_ = c.Close()
		}
	}()

	// 1. The RegistryMirror, applied in each runtime's format.
	mirrorDoc := func(skipFallback bool) string {
		doc := "apiVersion: regwire.dev/v1alpha1\nkind: RegistryMirror\nmetadata:\n  name: nexus\nspec:\n  host: nexus.local\n  caBundle: |\n" +
			indentLines(string(pki.CA), "    ") +
			"  mirrorOf: [{host: docker.io, path: /v2/docker-proxy}]\n"
		if skipFallback {
			doc += "  skipFallback: true\n"
		}
		return doc
	}
	nodeApply := func(runtime, root, doc string) {
		t.Helper()
		f := filepath.Join(work, "mirror-"+runtime+".yaml")
		writeFile(t, f, doc)
		out, err := exec.Command(regwire, "node", "apply", "-f", f, "--runtime", runtime, "--root", root, "--hosts-file", "").CombinedOutput()
		if err != nil {
			t.Fatalf("regwire node apply --runtime %s: %v\n%s", runtime, err, out)
		}
		t.Logf("node apply --runtime %s:\n%s", runtime, out)
	}
	nodeApply("containerd", containerdCerts, mirrorDoc(true))
	nodeApply("crio", containers, mirrorDoc(true))
	// Docker Engine cannot express mirrorOf: the same registry without it.
	dockerDoc := strings.Split(mirrorDoc(false), "  mirrorOf:")[0]
	nodeApply("docker", dockerCerts, dockerDoc)

	// 2. Each client pulls nexus.local/my-docker/hello:1.0.
	netns := []string{"nsenter", "--net=" + d.Netns}
	ctrd := startContainerdWith(t, l, filepath.Join(work, "containerd"), containerdCerts, "registry.k8s.io/pause:3.10",
		append(netns, testutil.PrivateMounts(map[string]string{"/etc/hosts": hosts})...)...)
	podman := newPodman(t, append(netns, testutil.PrivateMounts(map[string]string{"/etc/hosts": hosts, "/etc/containers": containers})...))
	skopeo := func(args ...string) (string, error) {
		argv := append(append(netns, testutil.PrivateMounts(map[string]string{"/etc/hosts": hosts, "/etc/containers": containers})...),
			append([]string{"skopeo"}, args...)...)
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return string(out), err
	}
	const image = "nexus.local/my-docker/hello:1.0"
	creds := user + ":" + password

	if _, err := ctrd.pull(image, user, password); err != nil {
		t.Fatalf("containerd (CRI) could not pull %s: %v", image, err)
	}
	if out, err := podman("pull", "--creds", creds, image); err != nil {
		t.Fatalf("podman could not pull %s: %v\n%s", image, err, out)
	}
	if out, err := skopeo("copy", "--src-creds", creds, "docker://"+image, "oci:"+filepath.Join(work, "skopeo-oci")+":hello"); err != nil {
		t.Fatalf("skopeo could not copy %s: %v\n%s", image, err, out)
	}
	login := exec.Command("docker", "login", "--username", user, "--password-stdin", "nexus.local")
	login.Env, login.Stdin = append(os.Environ(), d.Env...), strings.NewReader(password)
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("docker login nexus.local (Docker Engine trusting nexus.local through certs.d): %v\n%s", err, out)
	}
	if out, err := d.Docker(ctx, "pull", image); err != nil {
		t.Fatalf("Docker Engine could not pull %s: %v\n%s", image, err, out)
	}
	t.Logf("containerd, podman, skopeo and Docker Engine pulled %s", image)

	// 3. skipFallback: docker.io comes from the mirror, and only from it.
	const hubImage = "docker.io/library/hello:1.0"
	// Credentials as kubelet passes a pull secret for docker.io (ServerAddress docker.io)
	// do not reach the mirror on nexus.local: containerd asks anonymously, the mirror
	// refuses, and with skipFallback the pull fails instead of going to Docker Hub.
	if err := ctrd.pullAsKubelet(hubImage, "docker.io", user, password); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("containerd pulled %s through an authenticated mirror with docker.io's credentials (%v), want 401 at the mirror", hubImage, err)
	} else {
		t.Logf("containerd, docker.io's credentials, authenticated mirror: %v", err)
	}
	seen := len(nx.Requests())
	if _, err := ctrd.pull(hubImage, user, password); err != nil {
		t.Fatalf("containerd could not pull %s from the mirror: %v", hubImage, err)
	}
	// podman, like CRI-O, sends credentials given for docker.io to docker.io only, never
	// to a mirror on another host: the mirror refuses the anonymous pull and, with
	// skipFallback, the pull fails instead of going to Docker Hub.
	if out, err := podman("pull", "--creds", creds, hubImage); err == nil || !strings.Contains(out, "unauthorized") || !strings.Contains(out, "blocked") {
		t.Fatalf("podman pulled %s through an authenticated mirror with docker.io's credentials (%v), want unauthorized at the mirror and docker.io blocked:\n%s", hubImage, err, out)
	}
	// Credentials for the mirror's own host do reach it.
	if out, err := podman("login", "--username", user, "--password", password, "nexus.local"); err != nil {
		t.Fatalf("podman login nexus.local: %v\n%s", err, out)
	}
	if out, err := podman("pull", hubImage); err != nil {
		t.Fatalf("podman could not pull %s from the mirror: %v\n%s", hubImage, err, out)
	}
	if !slices.ContainsFunc(nx.Requests()[seen:], func(r string) bool { return strings.Contains(r, "/v2/docker-proxy/library/hello/manifests/1.0") }) {
		t.Fatalf("the mirror saw no request for docker-proxy/library/hello:\n%s", strings.Join(nx.Requests()[seen:], "\n"))
	}
	if n := hubConns.Load(); n != 0 {
		t.Fatalf("Docker Hub's stand-in saw %d connections while the mirror served", n)
	}

	mirror.Close() // the mirror is down
	ctrd.remove(t, hubImage)
	if out, err := podman("rmi", "--force", hubImage); err != nil {
		t.Fatalf("podman rmi: %v\n%s", err, out)
	}
	if _, err := ctrd.pull(hubImage, user, password); err == nil {
		t.Fatal("containerd pulled docker.io/library/hello with the mirror down and skipFallback set")
	} else {
		t.Logf("containerd, mirror down: %v", err)
	}
	if out, err := podman("pull", hubImage); err == nil {
		t.Fatalf("podman pulled %s with the mirror down and skipFallback set:\n%s", hubImage, out)
	} else {
		t.Logf("podman, mirror down: %s", lastLine(out))
	}
	if n := hubConns.Load(); n != 0 {
		t.Fatalf("with skipFallback, Docker Hub's stand-in saw %d connections", n)
	}

	// Without skipFallback the same pulls go upstream: the stand-in does count them.
	nodeApply("containerd", containerdCerts, mirrorDoc(false))
	nodeApply("crio", containers, mirrorDoc(false))
	if _, err := ctrd.pull(hubImage, user, password); err == nil {
		t.Fatal("containerd pulled from a Docker Hub stand-in that answers nothing")
	}
	afterContainerd := hubConns.Load()
	if afterContainerd == 0 {
		t.Fatal("without skipFallback, containerd did not fall back to Docker Hub: the stand-in cannot prove anything")
	}
	if _, err := podman("pull", hubImage); err == nil {
		t.Fatal("podman pulled from a Docker Hub stand-in that answers nothing")
	}
	if hubConns.Load() == afterContainerd {
		t.Fatal("without skipFallback, podman did not fall back to Docker Hub: the stand-in cannot prove anything")
	}
	t.Logf("without skipFallback the stand-in saw %d connections; with it, none", hubConns.Load())

	// 4. Releasing leaves every runtime's directory exactly as it was.
	for runtime, root := range map[string]string{"containerd": containerdCerts, "crio": containers, "docker": dockerCerts} {
		nodeApply(runtime, root, "")
		// podman keeps its network lock in /etc/containers/networks: its own file, not ours.
		if got := testutil.Snapshot(t, root, ".regwire", "networks"); !equalMaps(got, foreign[root]) {
			t.Errorf("%s root after release differs from before:\n got %v\nwant %v", runtime, got, foreign[root])
		}
	}
}

// newPodman returns a podman of the test's own (storage, run root, auth file), run behind
// the command prefix wrap (namespaces to enter).
func newPodman(t *testing.T, wrap []string) func(args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is missing: apt-get install podman (.ci/run does)")
	}
	// podman refuses a run root longer than 50 characters: a short directory of its own.
	p, err := os.MkdirTemp("", "rwp")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(p, "auth.json"), "{}\n") // podman login's; pulls do not create it
	podman := func(args ...string) (string, error) {
		argv := append(slices.Clone(wrap), append([]string{"env", "REGISTRY_AUTH_FILE=" + filepath.Join(p, "auth.json"),
			"podman", "--root", filepath.Join(p, "root"), "--runroot", filepath.Join(p, "run"), "--tmpdir", filepath.Join(p, "tmp"),
			"--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"}, args...)...)
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		_, _ = podman("rmi", "--all", "--force")
		_ = os.RemoveAll(p)
	})
	return podman
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func indentLines(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(strings.TrimRight(s, "\n")+"\n", "\n") {
		if line != "" {
			b.WriteString(prefix + line)
		}
	}
	return b.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// copyImage copies src (an anonymous registry) to dst with auth, index and all.
func copyImage(t *testing.T, src, dst string, auth authn.Authenticator) {
	t.Helper()
	s, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := name.ParseReference(dst, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(dr, idx, remote.WithAuth(auth)); err != nil {
		t.Fatalf("pushing %s: %v", dst, err)
	}
}
