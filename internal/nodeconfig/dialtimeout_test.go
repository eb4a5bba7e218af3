package nodeconfig_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/testutil"
)

// blackhole is a loopback address whose connects hang as a dead host's do: a listener
// with a backlog of one that never accepts, its queue filled, so that the kernel drops
// further SYNs (tcp_abort_on_overflow off).
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue; then a connect must hang until its own timeout.
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	start := time.Now()
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		_ = c.Close()
		t.Fatal("a connect beyond the full backlog was answered: this kernel aborts on overflow (net.ipv4.tcp_abort_on_overflow=1?), so no dead host can be stood in for on loopback")
	} else if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("a connect to the blackhole failed at once (%v): it would not hang as a dead host's does", err)
	}
	return addr
}

// TestContainerdGivesUpOnADeadEndpointAfterTheDialTimeout renders a mirror whose first
// endpoint does not answer (its connects hang) and whose fallback endpoint serves the
// image, and resolves the image with containerd's own resolver on the rendered hosts.toml:
// it must move on after spec.dialTimeout, not after containerd's 30 s.
func TestContainerdGivesUpOnADeadEndpointAfterTheDialTimeout(t *testing.T) {
	t.Parallel()
	dead := blackhole(t)
	ca := testutil.NewCA(t, "dial CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	live := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	live.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerTLS(t, "127.0.0.1")}, MinVersion: tls.VersionTLS12}
	live.StartTLS()
	t.Cleanup(live.Close)
	img, _ := random.Image(256, 1)
	if err := remote.Write(testutil.Ref(t, strings.TrimPrefix(live.URL, "https://")+"/app:1"), img, remote.WithTransport(testutil.CATransport(t, ca.PEM))); err != nil {
		t.Fatal(err)
	}

	const host = "mirror.local"
	for _, tc := range []struct {
		name    string
		timeout *metav1.Duration
		want    time.Duration
	}{
		{"the default", nil, nodeconfig.DefaultDialTimeout},
		{"a timeout of 200ms", &metav1.Duration{Duration: 200 * time.Millisecond}, 200 * time.Millisecond},
	} {
		c := nodeconfig.Render([]nodeconfig.Mirror{{Name: "dial", CA: []byte(ca.PEM), Spec: v1alpha1.RegistryMirrorSpec{
			Host: host, Endpoint: "https://" + dead, FallbackEndpoints: []v1alpha1.EndpointURL{v1alpha1.EndpointURL(live.URL)}, DialTimeout: tc.timeout,
		}}})
		root := t.TempDir()
		writeTree(t, root, c.Files)
		resolver := docker.NewResolver(docker.ResolverOptions{Hosts: config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(root)})})
		start := time.Now()
		_, desc, err := resolver.Resolve(context.Background(), host+"/app:1")
		took := time.Since(start)
		want, _ := img.Digest()
		if err != nil || desc.Digest.String() != want.String() {
			t.Fatalf("%s: resolve through the fallback endpoint: %v, %v (hosts.toml in %s)", tc.name, desc.Digest, err, filepath.Join(root, host))
		}
		// The dead endpoint's connect, then the live one's answers.
		if took < tc.want || took > tc.want+2*time.Second {
			t.Errorf("%s: resolved after %s; want the dead endpoint given up after %s", tc.name, took.Round(time.Millisecond), tc.want)
		}
		t.Logf("%s: resolved after %s (dial_timeout %s)", tc.name, took.Round(time.Millisecond), tc.want)
	}
}
