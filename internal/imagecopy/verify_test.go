package imagecopy_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestOnlyTagsSignedByAGivenKeyAreCopied: of an image signed with the key given, one
// unsigned and one signed by another key, only the first reaches the target; the others
// are SignatureErrors naming the tag, with no byte of them at the target. Offline: the
// keys are all there is to trust.
func TestOnlyTagsSignedByAGivenKeyAreCopied(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	ours, theirs := testutil.NewSigningKey(t), testutil.NewSigningKey(t)
	repo := src.Host + "/library/app"
	layers := map[string][]v1.Hash{}
	for _, tag := range []string{"signed", "unsigned", "other-key"} {
		img := testutil.PushImage(t, repo+":"+tag, 2048, 2)
		d, _ := img.Digest()
		ls, _ := img.Layers()
		for _, l := range ls {
			ld, _ := l.Digest()
			layers[tag] = append(layers[tag], ld)
		}
		switch tag {
		case "signed":
			ours.CosignSign(t, repo, d)
		case "other-key":
			theirs.CosignSign(t, repo, d)
		}
	}
	// A signature of another image, moved under this one's signature tag.
	idx := testutil.PushIndex(t, repo+":moved", []string{"linux/amd64"}, 512, 1)
	signedHead, _ := remote.Head(testutil.Ref(t, repo+":signed"))
	sigOfSigned, err := remote.Image(testutil.Ref(t, repo+":sha256-"+signedHead.Digest.Hex+".sig"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(testutil.Ref(t, repo+":sha256-"+idx.Hex+".sig"), sigOfSigned); err != nil {
		t.Fatal(err)
	}

	keys, err := imagecopy.ParseKeys(map[string][]byte{"cosign.pub": ours.PublicPEM})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: repo}, imagecopy.Endpoint{Repository: dst.Host + "/m/app"}, imagecopy.Options{Verify: keys, Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	sel, _ := tagselect.New(tagselect.Spec{Tags: []string{"signed", "unsigned", "other-key", "moved"}})
	tags, err := eng.Tags(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"unsigned": "unsigned: the source has no signature", "other-key": "a signature no given key verifies",
		"moved": "a signature (by cosign.pub) of another image, " + signedHead.Digest.String()}
	for _, res := range eng.Sync(context.Background(), tags) {
		var se *imagecopy.SignatureError
		switch {
		case res.Tag == "signed":
			if res.Err != nil || res.TargetDigest != signedHead.Digest.String() {
				t.Errorf("signed: %+v", res)
			}
		case !errors.As(res.Err, &se) || se.Tag != res.Tag || !strings.Contains(res.Err.Error(), want[res.Tag]) || !strings.HasPrefix(res.Err.Error(), "SignatureNotVerified: "+res.Tag):
			t.Errorf("%s: %v, want a SignatureError saying %q", res.Tag, res.Err, want[res.Tag])
		case res.Bytes != 0:
			t.Errorf("%s: %d bytes sent", res.Tag, res.Bytes)
		}
	}
	// The signed image, its layers and its signature are at the target; nothing of the others.
	for _, l := range layers["signed"] {
		resp, err := http.Head(dst.URL + "/v2/m/app/blobs/" + l.String())
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("a layer of the signed image is not at the target (HEAD %d)", resp.StatusCode)
		}
	}
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/m/app:sha256-"+signedHead.Digest.Hex+".sig")); err != nil {
		t.Errorf("the signature did not travel with the image: %v", err)
	}
	for _, tag := range []string{"unsigned", "other-key", "moved"} {
		if _, err := remote.Head(testutil.Ref(t, dst.Host+"/m/app:"+tag)); err == nil {
			t.Errorf("%s reached the target", tag)
		}
		for _, l := range layers[tag] {
			resp, err := http.Head(dst.URL + "/v2/m/app/blobs/" + l.String())
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("a layer of %s is at the target (HEAD %d)", tag, resp.StatusCode)
			}
		}
	}
	if _, err := imagecopy.ParseKeys(map[string][]byte{"bad.pub": []byte("not a key")}); err == nil || !strings.Contains(err.Error(), "bad.pub: not a PEM public key") {
		t.Errorf("a bad key: %v", err)
	}
}
