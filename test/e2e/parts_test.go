//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/nexusemulator"
	"github.com/regwire/regwire/internal/test/testutil"
)

// logs collects the output of every component and prints it when the test fails.
type logs struct {
	mu    sync.Mutex
	bufs  map[string]*testutil.SyncBuffer
	keys  []string
	extra []namedStringer
}

func newLogs(t *testing.T) *logs {
	l := &logs{bufs: map[string]*testutil.SyncBuffer{}}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, k := range l.keys {
			t.Logf("==== %s log ====\n%s", k, l.bufs[k])
		}
		for _, e := range l.extra {
			t.Logf("==== %s log ====\n%s", e.name, e.s)
		}
	})
	return l
}

func (l *logs) buffer(name string) *testutil.SyncBuffer {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.bufs[name]; ok {
		return b
	}
	b := &testutil.SyncBuffer{}
	l.bufs[name] = b
	l.keys = append(l.keys, name)
	return b
}

// add puts a component's log that a helper keeps into the dump.
func (l *logs) add(name string, s fmt.Stringer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.extra = append(l.extra, namedStringer{name, s})
}

type namedStringer struct {
	name string
	s    fmt.Stringer
}

// start runs a process until the test ends (SIGTERM, then SIGKILL after 10 s), its
// output in the logs under name.
func start(t *testing.T, l *logs, name string, env []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = l.buffer(name), l.buffer(name)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd
}

// helloImage builds a static Go program that prints line, for each GOARCH, and pushes an
// OCI index of them to ref.
func helloImage(t *testing.T, ref, line string, arches ...string) v1.Hash {
	t.Helper()
	return goImage(t, ref, fmt.Sprintf("package main\n\nimport \"os\"\n\nfunc main() { _, _ = os.Stdout.WriteString(%q + \"\\n\") }\n", line), arches...)
}

// goImage builds the Go program prog for each GOARCH and pushes an OCI index of them to
// ref, the binary as /hello and the entrypoint.
func goImage(t *testing.T, ref, prog string, arches ...string) v1.Hash {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range arches {
		out := filepath.Join(dir, "hello-"+arch)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=mod")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building hello for %s: %v\n%s", arch, err, b)
		}
		bin, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(bin)
		_ = tw.Close()
		layerBytes := tb.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), layer)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.Entrypoint = []string{"/hello"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d
}

// startControlPlane starts kube-apiserver + etcd and writes an admin kubeconfig into dir.
func startControlPlane(t *testing.T, dir string, o controlplane.Options) (*controlplane.ControlPlane, string, client.Client) {
	t.Helper()
	cp, err := controlplane.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	kc, err := cp.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp, kubeconfig, newClient(t, cp)
}

// privateRegistry is "Nexus" as teams run it: Nexus (the emulator, nexusemulator, serving
// its REST API and docker repositories) behind real nginx, with the nginx.conf and SAN
// certificate the bootstrap generates, reachable as nexus.local (and the other names given)
// on a private loopback port (not the machine's 443).
type privateRegistry struct {
	nexus *nexusemulator.Server
	// url is Nexus's own address (http://127.0.0.1:<port>), as the proxy reaches it.
	url string
	// host is nexus.local:<port>, as image references name it.
	host, user, password string
	// port is the proxy's HTTPS port.
	port string
	// tlsDir holds the bootstrap's CA and certificate; ca is the CA in PEM; nginxConf the
	// configuration nginx runs with.
	tlsDir, nginxConf string
	ca                []byte
}

// startPrivateRegistry starts Nexus with user's password set, behind nginx serving
// nexus.local and names.
func startPrivateRegistry(t *testing.T, l *logs, dir, user, password string, names ...string) *privateRegistry {
	t.Helper()
	p := &privateRegistry{user: user, password: password, tlsDir: filepath.Join(dir, "tls")}
	p.nexus = nexusemulator.New(password)
	if user != "admin" {
		p.nexus.AddUser(user, password, "nexus:repository-view:docker:*:*")
	}
	srv := httptest.NewServer(p.nexus)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	l.add("nexus requests", stringer(func() string { return strings.Join(p.nexus.Requests(), "\n") }))
	pki, err := bootstrap.EnsurePKI(p.tlsDir, bootstrap.PKIOptions{DNSNames: append([]string{"nexus.local"}, names...)})
	if err != nil {
		t.Fatal(err)
	}
	p.ca = pki.CA
	httpsAddr := testutil.FreeAddr(t)
	_, p.port, _ = net.SplitHostPort(httpsAddr)
	p.host = "nexus.local:" + p.port
	p.nginxConf = renderNginx(t, dir, p.tlsDir, strings.TrimPrefix(srv.URL, "http://"), httpsAddr)
	testutil.StartNginx(t, p.nginxConf, httpsAddr) // its log is printed when the test fails
	return p
}

// createRepository creates a docker (hosted) repository with path-based routing and
// Basic authentication, as the bootstrap does.
func (p *privateRegistry) createRepository(t *testing.T, name string) {
	t.Helper()
	c, err := nexus.New(p.url, "admin", p.password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureDockerHosted(context.Background(), &nexus.DockerHostedRepository{
		Name: name, Online: true,
		Storage: nexus.HostedStorage{BlobStoreName: "default", StrictContentTypeValidation: true, WritePolicy: nexus.WritePolicyAllow},
		Docker:  nexus.Docker{ForceBasicAuth: true, PathEnabled: new(true)},
	}); err != nil {
		t.Fatal(err)
	}
}

type stringer func() string

func (f stringer) String() string { return f() }

// buildRegwireImage builds regwire's image the way `make image` does (hack/image, no Docker)
// into an OCI layout at out, for this machine's platform only: the second platform of a
// release proves nothing more here (internal/imagebuild's test assembles a two-platform
// index) and would cost a cross-build of everything. push, when set, is a reference of a
// plain-HTTP registry to push it to; more are hack/image's other flags.
func buildRegwireImage(t *testing.T, version, out, push string, more ...string) {
	t.Helper()
	args := []string{"run", "./hack/image", "--version", version, "--commit", "e2e", "--platforms", "linux/" + runtime.GOARCH, "--out", out}
	if push != "" {
		args = append(args, "--push", push, "--insecure")
	}
	args = append(args, more...)
	cmd := exec.Command("go", args...)
	cmd.Dir = testutil.RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/image: %v\n%s", err, b)
	} else {
		t.Logf("%s", b)
	}
}

// appsMayPush lets the ImageSyncs of namespace apps push into a mirror, under patterns.
func appsMayPush(patterns ...v1alpha1.RepositoryPattern) *v1alpha1.ImageSyncPolicy {
	return &v1alpha1.ImageSyncPolicy{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "apps"}},
		Repositories:      patterns,
	}
}
