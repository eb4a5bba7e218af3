package imagecopy

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// cosign's signature format (its SIGNATURE_SPEC): the signatures of the manifest
// sha256:<hex> are the layers of the manifest tagged sha256-<hex>.sig, each a simple
// signing payload (the signed manifest's digest and the claimed reference) with its
// base64 signature in an annotation.
const (
	cosignSimpleSigning   = "application/vnd.dev.cosign.simplesigning.v1+json"
	cosignSignatureAnnot  = "dev.cosignproject.cosign/signature"
	maxSignaturePayload   = 64 << 10
	maxSignatureManifests = 4 << 20
)

// Keys are public keys a tag's cosign signature must verify with, offline: no
// transparency log, no certificate authority, no network beyond the source registry.
type Keys struct {
	keys []namedVerifier
}

type namedVerifier struct {
	name string
	v    signature.Verifier
}

// ParseKeys reads PEM public keys (ECDSA, RSA, Ed25519; as cosign generate-key-pair writes
// cosign.pub), each named for the errors (a file, a Secret's key).
func ParseKeys(named map[string][]byte) (*Keys, error) {
	k := &Keys{}
	for name, pem := range named {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
		if err != nil {
			return nil, fmt.Errorf("%s: not a PEM public key: %w", name, err)
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		k.keys = append(k.keys, namedVerifier{name: name, v: v})
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no public key to verify signatures with")
	}
	return k, nil
}

// SignatureError says why a tag was not copied: no signature of its digest verified with
// any of the keys.
type SignatureError struct {
	Tag, Digest string
	Why         string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("SignatureNotVerified: %s (%s): %s; nothing of it was copied", e.Tag, e.Digest, e.Why)
}

// verify checks that a cosign signature of digest in the source verifies with one of the
// keys. It reads the signature manifest and its payloads (small, bounded) from the source.
func (e *Engine) verify(ctx context.Context, tag string, digest v1.Hash) error {
	fail := func(format string, args ...any) error {
		return &SignatureError{Tag: tag, Digest: digest.String(), Why: fmt.Sprintf(format, args...)}
	}
	sigTag := e.src.repo.Tag(digest.Algorithm + "-" + digest.Hex + ".sig")
	release, err := e.slot(ctx)
	if err != nil {
		return err
	}
	defer release()
	desc, err := e.src.puller.Get(ctx, sigTag)
	if isNotFound(err) {
		return fail("unsigned: the source has no signature %s", sigTag.TagStr())
	} else if err != nil {
		return describe(fmt.Errorf("reading the signature: %w", err), "source", sigTag.String())
	}
	if len(desc.Manifest) > maxSignatureManifests {
		return fail("the signature manifest is too large")
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return fail("the signature manifest does not parse: %v", err)
	}
	var whys []string
	for _, l := range m.Layers {
		if l.MediaType != cosignSimpleSigning {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignSignatureAnnot])
		if err != nil || len(sig) == 0 {
			whys = append(whys, "a signature without a valid "+cosignSignatureAnnot+" annotation")
			continue
		}
		if l.Size > maxSignaturePayload {
			whys = append(whys, "a payload too large to be a signature")
			continue
		}
		body, err := e.readSmallBlob(ctx, l)
		if err != nil {
			return describe(fmt.Errorf("reading a signature payload: %w", err), "source", e.src.repo.Digest(l.Digest.String()).String())
		}
		key := ""
		for _, k := range e.o.Verify.keys {
			if k.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)) == nil {
				key = k.name
				break
			}
		}
		if key == "" {
			whys = append(whys, "a signature no given key verifies")
			continue
		}
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(body, &p); err != nil || p.Critical.Type != payload.CosignSignatureType {
			whys = append(whys, "a payload that is not a cosign container image signature")
			continue
		}
		if p.Critical.Image.DockerManifestDigest != digest.String() {
			whys = append(whys, fmt.Sprintf("a signature (by %s) of another image, %s", key, p.Critical.Image.DockerManifestDigest))
			continue
		}
		return nil
	}
	if len(whys) == 0 {
		whys = append(whys, "the signature manifest holds no cosign signature")
	}
	return fail("%s", strings.Join(whys, "; "))
}

// readSmallBlob reads a small blob of the source whole, checked against its digest.
func (e *Engine) readSmallBlob(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	layer, err := e.src.puller.Layer(ctx, e.src.repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSignaturePayload+1))
	if err != nil {
		return nil, err
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(b)); h != d.Digest {
		return nil, fmt.Errorf("the payload does not match its digest %s", d.Digest)
	}
	return b, nil
}
