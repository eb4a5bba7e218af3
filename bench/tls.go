package main

import (
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
	"os"
	"path/filepath"
	"time"
)

// loopbackTLS is what the registries serve HTTPS with: a private CA, as a registry behind
// nginx or Nexus usually has, and a certificate for 127.0.0.1 it signed. Every peer trusts
// the CA the way a machine does, through SSL_CERT_FILE (the system roots of Go programs,
// skopeo included), and verifies the registries' certificate.
type loopbackTLS struct {
	ca, cert, key string // PEM files
	pool          *x509.CertPool
}

func newLoopbackTLS(dir string) (*loopbackTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "regwire bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	t := &loopbackTLS{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	t.pool.AddCert(ca)
	for file, block := range map[string]*pem.Block{
		t.ca:   {Type: "CERTIFICATE", Bytes: caDER},
		t.cert: {Type: "CERTIFICATE", Bytes: leafDER},
		t.key:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// trust makes this process and every peer it starts trust the CA (and nothing else).
func (t *loopbackTLS) trust() error { return os.Setenv("SSL_CERT_FILE", t.ca) }

// transport is an HTTP transport that trusts the CA.
func (t *loopbackTLS) transport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: t.pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64,
		DisableCompression: true, ForceAttemptHTTP2: true}
}
