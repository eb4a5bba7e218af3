package bootstrap_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestNginxServesARegistryPushAndPull puts real nginx, with the generated nginx.conf and
// SAN certificate, in front of a real registry and pushes and pulls an image with an
// 8 MiB layer through it (nginx's default body limit is 1 MiB: a 413 without
// client_max_body_size 0), then checks the HTTP to HTTPS redirect.
func TestNginxServesARegistryPushAndPull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // nginx workers run as nobody
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	pki, err := bootstrap.EnsurePKI(tlsDir, bootstrap.PKIOptions{DNSNames: []string{"nexus.local"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	https, plain := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, httpsPort, _ := net.SplitHostPort(https)
	conf, err := bootstrap.RenderNginx(bootstrap.NginxOptions{
		ServerName: "nexus.local", Upstream: reg.Host,
		ListenHTTPS: []string{https}, ListenHTTP: []string{plain}, HTTPSPort: atoi(t, httpsPort),
		CertFile: filepath.Join(tlsDir, bootstrap.ServerCertFile), KeyFile: filepath.Join(tlsDir, bootstrap.ServerKeyFile),
		PidFile: filepath.Join(dir, "nginx.pid"), TempDir: dir, ErrorLog: "stderr",
	})
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.StartNginx(t, confPath, https)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.CA)
	tr := remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	img, err := random.Image(8<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(https + "/my-docker/busybox:1.36")
	if err := remote.Write(ref, img, tr); err != nil {
		t.Fatalf("push through nginx: %v", err)
	}
	got, err := remote.Image(ref, tr)
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Errorf("pulled %s, pushed %s", gd, wd)
	}
	layers, _ := got.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
	}
	// And straight from the registry behind it.
	direct, _ := name.ParseReference(reg.Host + "/my-docker/busybox:1.36")
	if d, err := remote.Head(direct); err != nil || d.Digest != wd {
		t.Errorf("registry behind nginx: %v %v", d, err)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("http://" + plain + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || !strings.HasSuffix(loc, ":"+httpsPort+"/v2/") || !strings.HasPrefix(loc, "https://") {
		t.Errorf("plain HTTP: %d to %q, want 301 to https://…:%s/v2/", resp.StatusCode, loc, httpsPort)
	}
}

func TestNginxConfRefusesValuesThatWouldChangeIt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		o    bootstrap.NginxOptions
		want string
	}{
		{"a server name with a space", bootstrap.NginxOptions{ServerName: "nexus.local; evil", Upstream: "nexus:8081"}, "nginx server name"},
		{"an upstream without a port", bootstrap.NginxOptions{ServerName: "nexus.local", Upstream: "nexus"}, "nginx upstream"},
		{"a certificate path with a semicolon", bootstrap.NginxOptions{ServerName: "nexus.local", Upstream: "nexus:8081", CertFile: "/x;include /etc/passwd"}, "must not contain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := bootstrap.RenderNginx(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestNginxSendsTheHeadersNexusNeedsAndNoForwardedHost: Host with its port (Nexus builds
// upload Locations and token realms from it) and no X-Forwarded-Host, which makes Nexus
// 3.78–3.80 double the port in its Bearer realm (nexus-public #611, #651).
func TestNginxSendsTheHeadersNexusNeedsAndNoForwardedHost(t *testing.T) {
	t.Parallel()
	conf, err := bootstrap.RenderNginx(bootstrap.NginxOptions{ServerName: "nexus.local", Upstream: "nexus:8081"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"proxy_set_header Host $http_host;", "proxy_set_header X-Forwarded-Proto $scheme;"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nginx.conf lacks %q", want)
		}
	}
	if strings.Contains(string(conf), "X-Forwarded-Host") {
		t.Error("nginx.conf sends X-Forwarded-Host")
	}
}
