package bootstrap

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/utils/clock"
)

// KeyType is the kind of private key the PKI generates.
type KeyType string

const (
	// KeyECDSA is ECDSA on P-256 (the default: small and fast).
	KeyECDSA KeyType = "ecdsa"
	// KeyRSA is RSA 2048, for clients that still want it.
	KeyRSA KeyType = "rsa"
)

// PKI file names under the state directory's tls/ folder.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// PKIOptions say what certificates EnsurePKI keeps valid.
type PKIOptions struct {
	// DNSNames and IPs the server certificate carries as subject alternative names (never
	// only a common name: Go and containerd refuse "legacy Common Name" certificates).
	DNSNames []string
	IPs      []net.IP
	// KeyType of new keys; default KeyECDSA.
	KeyType KeyType
	// CALifetime (default 10 years) and ServerLifetime (default 397 days, the most
	// browsers accept) of new certificates.
	CALifetime, ServerLifetime time.Duration
	// RenewBefore is how long before expiry a certificate is issued again (default 30
	// days).
	RenewBefore time.Duration
	// Clock tells the time (default: the real one); tests set a fake one.
	Clock clock.PassiveClock
}

// PKIResult says what EnsurePKI found and did.
type PKIResult struct {
	// CAIssued and ServerIssued are true when the certificate was (re)issued this time.
	CAIssued, ServerIssued bool
	// CA is the CA certificate PEM, what a RegistryMirror's caBundle wants.
	CA []byte
	// NotAfter of the server certificate.
	NotAfter time.Time
}

func (o *PKIOptions) defaults() {
	if o.KeyType == "" {
		o.KeyType = KeyECDSA
	}
	if o.CALifetime == 0 {
		o.CALifetime = 10 * 365 * 24 * time.Hour
	}
	if o.ServerLifetime == 0 {
		o.ServerLifetime = 397 * 24 * time.Hour
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = 30 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
}

// EnsurePKI keeps a private CA and a server certificate signed by it in dir: it creates
// what is missing and issues again what expires within RenewBefore, or (for the server
// certificate) no longer carries the requested names or was signed by another CA. Existing
// keys are kept, so a rerun changes nothing that is still good. Keys are written 0600.
func EnsurePKI(dir string, o PKIOptions) (*PKIResult, error) {
	o.defaults()
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		return nil, errors.New("the server certificate needs at least one DNS name or IP address (--host / --ip)")
	}
	if o.KeyType != KeyECDSA && o.KeyType != KeyRSA {
		return nil, fmt.Errorf("key type %q: want %q or %q", o.KeyType, KeyECDSA, KeyRSA)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now := o.Clock.Now()
	res := &PKIResult{}

	caKey, err := loadOrCreateKey(filepath.Join(dir, CAKeyFile), o.KeyType)
	if err != nil {
		return nil, err
	}
	ca, err := loadCert(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	if ca == nil || !ca.IsCA || !samePublicKey(ca.PublicKey, caKey.Public()) || now.Add(o.RenewBefore).After(ca.NotAfter) {
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "regwire bootstrap CA", Organization: []string{"regwire"}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(o.CALifetime),
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLenZero:        true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		}
		if ca, err = issue(tmpl, tmpl, caKey.Public(), caKey); err != nil {
			return nil, err
		}
		if err := writePEM(filepath.Join(dir, CACertFile), "CERTIFICATE", ca.Raw, 0o644); err != nil {
			return nil, err
		}
		res.CAIssued = true
	}

	key, err := loadOrCreateKey(filepath.Join(dir, ServerKeyFile), o.KeyType)
	if err != nil {
		return nil, err
	}
	srv, err := loadCert(filepath.Join(dir, ServerCertFile))
	if err != nil {
		return nil, err
	}
	if srv == nil || res.CAIssued || srv.CheckSignatureFrom(ca) != nil || !samePublicKey(srv.PublicKey, key.Public()) ||
		now.Add(o.RenewBefore).After(srv.NotAfter) || !sameNames(srv, o.DNSNames, o.IPs) {
		cn := ""
		if len(o.DNSNames) > 0 {
			cn = o.DNSNames[0]
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"regwire"}},
			DNSNames:     o.DNSNames,
			IPAddresses:  o.IPs,
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     minTime(now.Add(o.ServerLifetime), ca.NotAfter),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		if o.KeyType == KeyRSA {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
		if srv, err = issue(tmpl, ca, key.Public(), caKey); err != nil {
			return nil, err
		}
		if err := writePEM(filepath.Join(dir, ServerCertFile), "CERTIFICATE", srv.Raw, 0o644); err != nil {
			return nil, err
		}
		res.ServerIssued = true
	}
	res.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	res.NotAfter = srv.NotAfter
	return res, nil
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// loadOrCreateKey reads a PEM private key, or writes a new one of type t (0600).
func loadOrCreateKey(path string, t KeyType) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block; delete it to generate a new key", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w; delete it to generate a new key", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
		}
		if keyType(s) == t {
			return s, nil
		}
		// A different key type was asked for: a new key, and so new certificates.
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var s crypto.Signer
	if t == KeyRSA {
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		return nil, err
	}
	return s, writePEM(path, "PRIVATE KEY", der, 0o600)
}

func keyType(s crypto.Signer) KeyType {
	if _, ok := s.(*rsa.PrivateKey); ok {
		return KeyRSA
	}
	return KeyECDSA
}

// loadCert reads a PEM certificate; nil when the file does not exist.
func loadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil // unreadable: issue a new one
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil //nolint:nilerr // unreadable: issue a new one
	}
	return c, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

func sameNames(c *x509.Certificate, dns []string, ips []net.IP) bool {
	if !slices.Equal(sortedCopy(c.DNSNames), sortedCopy(dns)) || len(c.IPAddresses) != len(ips) {
		return false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// writePEM writes one PEM block atomically (temporary file, then rename) with mode.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeFile replaces path atomically with data and mode, unless it already holds exactly
// that (so reruns do not touch files).
func writeFile(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == mode {
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone after the rename
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil { // on disk before the rename makes it the file
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
