// Package cabundle parses PEM CA bundles given by users (RegistryMirror caBundle/caFrom,
// ImageSync caBundle) and reports what a status needs: the certificates and the earliest
// expiry.
package cabundle

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Bundle is a parsed CA bundle.
type Bundle struct {
	// Certificates in the order they appear in the PEM data.
	Certificates []*x509.Certificate
}

// ErrEmpty is returned for data that holds no PEM CERTIFICATE block.
var ErrEmpty = errors.New("no PEM CERTIFICATE block found")

// Parse reads every PEM block of data. Blocks other than CERTIFICATE (for example a private
// key pasted by mistake) are an error, as is data outside PEM blocks that is not whitespace,
// so that a truncated or mangled bundle never half-works.
func Parse(data []byte) (*Bundle, error) {
	b := &Bundle{}
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE (never put a private key in a CA bundle)", n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		b.Certificates = append(b.Certificates, cert)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unparsable data after certificate %d: the bundle must hold only -----BEGIN CERTIFICATE----- blocks", len(b.Certificates))
	}
	if len(b.Certificates) == 0 {
		return nil, ErrEmpty
	}
	return b, nil
}

// NotAfter is the earliest expiry of the bundle's certificates.
func (b *Bundle) NotAfter() time.Time {
	var first time.Time
	for _, c := range b.Certificates {
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first
}

// Expired returns the first certificate that has expired at now, or nil.
func (b *Bundle) Expired(now time.Time) *x509.Certificate {
	for _, c := range b.Certificates {
		if now.After(c.NotAfter) {
			return c
		}
	}
	return nil
}

// Pool returns the certificates as a pool for TLS verification.
func (b *Bundle) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range b.Certificates {
		p.AddCert(c)
	}
	return p
}
