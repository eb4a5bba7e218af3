package testutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/regwire/regwire/internal/test/registry"
)

// Registry is a CNCF distribution registry process (bin/registry, built by `make tools`)
// serving on a loopback port with storage in a temporary directory.
type Registry struct {
	// Host is host:port, as image references name it.
	Host string
	// URL is the base URL, http:// or https://.
	URL string
	// Log holds the registry's output.
	Log fmt.Stringer
	// Stop stops the registry before the test ends (it stops then anyway).
	Stop func()
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
	dir := t.TempDir()
	log := &SyncBuffer{}
	c := registry.Config{Dir: dir, Output: log}
	if o.TLS != nil {
		c.CertFile, c.KeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		writePEM(t, c.CertFile, "CERTIFICATE", o.TLS.Certificate[0])
		writeKey(t, c.KeyFile, o.TLS.PrivateKey)
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
		c.Htpasswd = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(c.Htpasswd, htpasswd.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if o.Token != nil {
		bundle := filepath.Join(dir, "token-signer.crt")
		if err := os.WriteFile(bundle, o.Token.certPE, 0o600); err != nil {
			t.Fatal(err)
		}
		c.Token = &registry.Token{Realm: o.Token.URL, Service: tokenService, Issuer: tokenIssuer, RootCertBundle: bundle}
	}
	p, err := registry.Start(RegistryBinary(t), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &Registry{Host: p.Addr, URL: p.URL, Log: log, Stop: p.Stop}
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
