package probe_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestProbeNamesTheErrorsOfTheTroubleshootingTable pins the messages README's
// troubleshooting table tells users to look for in status.nodes.failing (reason
// ProbeFailed): they come from the node's own probe of the registry.
func TestProbeNamesTheErrorsOfTheTroubleshootingTable(t *testing.T) {
	t.Parallel()
	t.Run("a certificate with only a legacy Common Name", func(t *testing.T) {
		t.Parallel()
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		defer srv.Close()
		ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		got := probe.Probe(context.Background(), mirrorAt(srv.URL, ca))
		if got.Reachable || !strings.Contains(got.Err, "legacy Common Name") {
			t.Errorf("Probe = %+v, want the legacy Common Name error", got)
		}
	})
	t.Run("a plain HTTP registry behind an https endpoint", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
		defer srv.Close()
		got := probe.Probe(context.Background(), mirrorAt(strings.Replace(srv.URL, "http://", "https://", 1), ""))
		if got.Reachable || !strings.Contains(got.Err, "server gave HTTP response to HTTPS client") {
			t.Errorf("Probe = %+v, want the HTTP-response-to-HTTPS-client error", got)
		}
	})
	t.Run("a name the node cannot resolve", func(t *testing.T) {
		t.Parallel()
		got := probe.Probe(context.Background(), mirrorAt("https://nexus.invalid", ""))
		if got.Reachable || !strings.Contains(got.Err, "lookup nexus.invalid") {
			t.Errorf("Probe = %+v, want a lookup error", got)
		}
	})
}

// TestProbeResolvesThroughTheNodesHostsFile is the agent pod's case: the alias is in the
// node's hosts file (which the agent edits through its mount), not in the pod's own copy.
func TestProbeResolvesThroughTheNodesHostsFile(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "probe CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerTLS(t, "nexus.invalid")}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	m := mirrorAt("https://nexus.invalid:"+port, ca.PEM)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n# BEGIN regwire\n127.0.0.1\tNEXUS.invalid\t# m\n# END regwire\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := (probe.Prober{HostsFile: hosts}).Probe(context.Background(), m); !got.Reachable {
		t.Errorf("with the node's hosts file: %+v, want reachable", got)
	}
	if got := (probe.Prober{}).Probe(context.Background(), m); got.Reachable || !strings.Contains(got.Err, "lookup nexus.invalid") {
		t.Errorf("without it: %+v, want a lookup error", got)
	}
}
