package probe_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/test/testutil"
)

// registry answers like a registry's API root.
func registry(t *testing.T, status int, wantPath string) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wantPath {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return srv, ca
}

func TestProbe(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		status    int
		path      string
		mirror    func(url, ca string) nodeconfig.Mirror
		reachable bool
		err       string
	}{
		{"a registry asking for credentials is reachable", http.StatusUnauthorized, "/v2/",
			mirrorAt, true, ""},
		{"an anonymous registry is reachable", http.StatusOK, "/v2/",
			mirrorAt, true, ""},
		{"an endpoint path is probed as the API root", http.StatusUnauthorized, "/repository/my-docker/v2/",
			func(url, ca string) nodeconfig.Mirror { return mirrorAt(url+"/repository/my-docker/v2", ca) }, true, ""},
		{"a web server that is not a registry is not reachable", http.StatusOK, "/elsewhere",
			mirrorAt, false, "answered 404"},
		{"a server whose certificate the CA did not sign is not reachable", http.StatusOK, "/v2/",
			func(url, _ string) nodeconfig.Mirror { return mirrorAt(url, "") }, false, "certificate"},
		{"insecureSkipVerify accepts any certificate", http.StatusOK, "/v2/",
			func(url, _ string) nodeconfig.Mirror {
				m := mirrorAt(url, "")
				m.Spec.InsecureSkipVerify = true
				return m
			}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, ca := registry(t, tc.status, tc.path)
			got := probe.Probe(context.Background(), tc.mirror(srv.URL, ca))
			if got.Reachable != tc.reachable || !strings.Contains(got.Err, tc.err) {
				t.Errorf("Probe = %+v, want reachable=%v and an error containing %q", got, tc.reachable, tc.err)
			}
		})
	}
}

func TestProbeOfAClosedPortSaysWhy(t *testing.T) {
	t.Parallel()
	// Port 1 (tcpmux) on loopback: nothing listens there, and unlike a port a test server
	// just released, no parallel test can take it meanwhile.
	got := probe.Probe(context.Background(), mirrorAt("https://127.0.0.1:1", ""))
	if got.Reachable || !strings.Contains(got.Err, "connection refused") {
		t.Errorf("Probe = %+v, want connection refused", got)
	}
}

func mirrorAt(endpoint, ca string) nodeconfig.Mirror {
	host := strings.TrimPrefix(endpoint, "https://")
	host, _, _ = strings.Cut(host, "/")
	return nodeconfig.Mirror{Name: "m", CA: []byte(ca), Spec: v1alpha1.RegistryMirrorSpec{Host: v1alpha1.RegistryHost(host), Endpoint: endpoint}}
}

// TestProbePresentsTheClientCertificate probes a registry that requires mutual TLS: with
// the mirror's client certificate it is reachable, without it the handshake fails.
func TestProbePresentsTheClientCertificate(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "mtls probe CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerTLS(t, "127.0.0.1")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cert, key := ca.ClientPEM(t, "node")
	m := nodeconfig.Mirror{Name: "mtls", Spec: v1alpha1.RegistryMirrorSpec{Host: "mtls.local", Endpoint: srv.URL}, CA: []byte(ca.PEM)}
	if res := probe.Probe(context.Background(), m); res.Reachable {
		t.Fatalf("reachable without a client certificate: %+v; the server does not require one", res)
	}
	m.ClientCert, m.ClientKey = cert, key
	if res := probe.Probe(context.Background(), m); !res.Reachable || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("with the client certificate: %+v, want reachable (401)", res)
	}
}

// TestAProberKeepsConnectionsAliveAcrossProbes: five probes of one registry with kept
// transports make one TLS connection; without, five. A change of the mirror's trust is a
// new connection (its chain checked again).
func TestAProberKeepsConnectionsAliveAcrossProbes(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	m := mirrorAt(srv.URL, caPEM)
	probeN := func(p probe.Prober, m nodeconfig.Mirror, n int) int64 {
		t.Helper()
		before := conns.Load()
		for range n {
			if res := p.Probe(context.Background(), m); !res.Reachable {
				t.Fatalf("probe: %+v", res)
			}
		}
		return conns.Load() - before
	}
	if got := probeN(probe.Prober{}, m, 5); got != 5 {
		t.Errorf("without kept transports: %d connections for 5 probes, want 5", got)
	}
	kept := probe.Prober{Transports: &probe.Transports{}}
	if got := probeN(kept, m, 5); got != 1 {
		t.Errorf("with kept transports: %d connections for 5 probes, want 1", got)
	}
	rotated := m
	rotated.CA = []byte(caPEM + "\n")
	if got := probeN(kept, rotated, 1); got != 1 {
		t.Errorf("a new trust reused a connection (%d new), want a new handshake", got)
	}
}
