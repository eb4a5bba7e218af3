package bootstrap_test

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/regwire/regwire/bootstrap"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPKIIssuesASANCertificateThatVerifies checks the chain with Go's verifier and with
// `openssl verify`, for both key types, and that keys are private.
func TestPKIIssuesASANCertificateThatVerifies(t *testing.T) {
	t.Parallel()
	for _, kt := range []bootstrap.KeyType{bootstrap.KeyECDSA, bootstrap.KeyRSA} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			res, err := bootstrap.EnsurePKI(dir, bootstrap.PKIOptions{DNSNames: []string{"nexus.local", "registry.example"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, KeyType: kt})
			if err != nil {
				t.Fatal(err)
			}
			if !res.CAIssued || !res.ServerIssued {
				t.Errorf("first run issued CA=%v server=%v", res.CAIssued, res.ServerIssued)
			}
			ca, srv := readCert(t, filepath.Join(dir, bootstrap.CACertFile)), readCert(t, filepath.Join(dir, bootstrap.ServerCertFile))
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			for _, name := range []string{"nexus.local", "registry.example", "127.0.0.1"} {
				if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
					t.Errorf("Go verifier for %s: %v", name, err)
				}
			}
			if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.local"}); err == nil {
				t.Error("the certificate verifies for a name it does not carry")
			}
			out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, bootstrap.CACertFile), "-verify_hostname", "nexus.local", filepath.Join(dir, bootstrap.ServerCertFile)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), ": OK") {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
			for _, f := range []string{bootstrap.CAKeyFile, bootstrap.ServerKeyFile} {
				if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: %v mode %v, want 0600", f, err, fi.Mode())
				}
			}
			if srv.NotAfter.Sub(srv.NotBefore) > 398*24*time.Hour {
				t.Errorf("server certificate lives %s, more than 398 days", srv.NotAfter.Sub(srv.NotBefore))
			}
		})
	}
}

func TestPKIRerunKeepsWhatIsGoodAndReissuesWhatIsNot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	opts := bootstrap.PKIOptions{DNSNames: []string{"nexus.local"}, Clock: clocktesting.NewFakePassiveClock(now)}
	if _, err := bootstrap.EnsurePKI(dir, opts); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, f := range []string{bootstrap.CACertFile, bootstrap.CAKeyFile, bootstrap.ServerCertFile, bootstrap.ServerKeyFile} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			m[f] = string(b)
		}
		return m
	}
	first := snapshot()

	cases := []struct {
		name                 string
		change               func(o *bootstrap.PKIOptions)
		wantCA, wantServer   bool
		keysKept, caKeptSame bool
	}{
		{"a rerun with the same names changes nothing", func(*bootstrap.PKIOptions) {}, false, false, true, true},
		{"a new name reissues the server certificate with the same key", func(o *bootstrap.PKIOptions) { o.DNSNames = append(o.DNSNames, "nexus.lan") }, false, true, true, true},
		{"a server certificate near its end is issued again", func(o *bootstrap.PKIOptions) {
			o.DNSNames = []string{"nexus.local", "nexus.lan"}
			o.Clock = clocktesting.NewFakePassiveClock(now.Add(380 * 24 * time.Hour))
		}, false, true, true, true},
		{"a CA near its end is issued again, and the server certificate with it", func(o *bootstrap.PKIOptions) {
			o.DNSNames = []string{"nexus.local", "nexus.lan"}
			o.Clock = clocktesting.NewFakePassiveClock(now.Add(10*365*24*time.Hour - 10*24*time.Hour))
		}, true, true, true, false},
	}
	for _, tc := range cases { // in order: each builds on the last
		o := opts
		tc.change(&o)
		before := snapshot()
		res, err := bootstrap.EnsurePKI(dir, o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		after := snapshot()
		if res.CAIssued != tc.wantCA || res.ServerIssued != tc.wantServer {
			t.Errorf("%s: issued CA=%v server=%v, want %v %v", tc.name, res.CAIssued, res.ServerIssued, tc.wantCA, tc.wantServer)
		}
		if tc.keysKept && (after[bootstrap.CAKeyFile] != first[bootstrap.CAKeyFile] || after[bootstrap.ServerKeyFile] != first[bootstrap.ServerKeyFile]) {
			t.Errorf("%s: a key changed", tc.name)
		}
		if (after[bootstrap.CACertFile] == before[bootstrap.CACertFile]) != tc.caKeptSame {
			t.Errorf("%s: CA certificate kept=%v, want %v", tc.name, after[bootstrap.CACertFile] == before[bootstrap.CACertFile], tc.caKeptSame)
		}
		if !tc.wantServer && after[bootstrap.ServerCertFile] != before[bootstrap.ServerCertFile] {
			t.Errorf("%s: the server certificate changed", tc.name)
		}
	}
	if _, err := bootstrap.EnsurePKI(t.TempDir(), bootstrap.PKIOptions{}); err == nil || !strings.Contains(err.Error(), "--host") {
		t.Errorf("no names: %v", err)
	}
}
