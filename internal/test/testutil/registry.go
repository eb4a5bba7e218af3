package testutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is a CNCF distribution registry process (bin/registry, built by `make tools`)
// serving on a loopback port with storage in a temporary directory.
type Registry struct {
	// Host is host:port, as image references name it.
	Host string
	// URL is the base URL, http:// or https://.
	URL string
	// Log holds the registry's output.
	Log *bytes.Buffer
}

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	// Users maps user names to passwords for htpasswd basic auth; empty means anonymous.
	Users map[string]string
	// TLS serves HTTPS with this certificate.
	TLS *tls.Certificate
	// Token, when set, makes the registry want bearer tokens from this token server
	// (instead of Users).
	Token *TokenServer
}

// RegistryBinary finds bin/registry: $REGWIRE_REGISTRY, else bin/registry in the nearest
// parent directory that has one.
func RegistryBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REGWIRE_REGISTRY"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "bin", "registry")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("the CNCF distribution registry is missing: run `make tools` (it builds bin/registry from the Go module proxy) or set REGWIRE_REGISTRY")
		}
		dir = parent
	}
}

// StartRegistry runs a registry until the test ends.
func StartRegistry(t testing.TB, o RegistryOptions) *Registry {
	t.Helper()
	bin := RegistryBinary(t)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		writePEM(t, certFile, "CERTIFICATE", o.TLS.Certificate[0])
		writeKey(t, keyFile, o.TLS.PrivateKey)
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	if len(o.Users) > 0 {
		var htpasswd bytes.Buffer
		for user, pass := range o.Users {
			h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&htpasswd, "%s:%s\n", user, h)
		}
		path := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(path, htpasswd.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: regwire-test\n    path: %s\n", path)
	}
	if o.Token != nil {
		bundle := filepath.Join(dir, "token-signer.crt")
		if err := os.WriteFile(bundle, o.Token.certPE, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n", o.Token.URL, tokenService, tokenIssuer, bundle)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	r := &Registry{Host: addr, URL: scheme + "://" + addr, Log: &bytes.Buffer{}}
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = r.Log, r.Log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // readiness probe of our own test server
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(r.URL + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry did not start: %v\n%s", err, r.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// CATransport returns an HTTP transport trusting the PEM CA certificates.
func CATransport(t testing.TB, caPEM string) http.RoundTripper {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("no certificate in the CA PEM")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr
}
