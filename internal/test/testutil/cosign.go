package testutil

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// SigningKey is a key pair made for a test, as `cosign generate-key-pair` makes one: an
// ECDSA P-256 key whose public half is PEM.
type SigningKey struct {
	signer    signature.SignerVerifier
	PublicPEM []byte
}

// NewSigningKey makes a key pair.
func NewSigningKey(t testing.TB) *SigningKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &SigningKey{signer: sv, PublicPEM: pem}
}

// CosignSign pushes a signature of the manifest digest in repo the way `cosign sign --key
// --tlog-upload=false` does (its SIGNATURE_SPEC): a manifest tagged sha256-<hex>.sig whose
// layer is the simple signing payload (from sigstore's payload package) with its base64
// signature in the dev.cosignproject.cosign/signature annotation. It returns the signature
// manifest's digest.
func (k *SigningKey) CosignSign(t testing.TB, repo string, digest v1.Hash, opts ...remote.Option) v1.Hash {
	t.Helper()
	d, err := name.NewDigest(repo + "@" + digest.String())
	if err != nil {
		t.Fatal(err)
	}
	body, err := (payload.Cosign{Image: d}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	layer := static.NewLayer(body, "application/vnd.dev.cosign.simplesigning.v1+json")
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       layer,
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if err := remote.Write(Ref(t, repo+":"+digest.Algorithm+"-"+digest.Hex+".sig"), img, opts...); err != nil {
		t.Fatal(err)
	}
	sd, _ := img.Digest()
	return sd
}
