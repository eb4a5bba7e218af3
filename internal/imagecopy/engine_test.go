package imagecopy_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

const password = "source-password"

// counter counts requests by method and kind (manifest, blob, other).
type counter struct {
	mu     sync.Mutex
	counts map[string]int
	next   http.RoundTripper
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.counts[requestKind(r)]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

// requestKind is "METHOD kind": the request's method and whether it is about a manifest,
// a blob or something else.
func requestKind(r *http.Request) string {
	kind := "other"
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		kind = "manifest"
	case strings.Contains(r.URL.Path, "/blobs/"):
		kind = "blob"
	}
	return r.Method + " " + kind
}

func (c *counter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

// pushFixtures pushes a three-platform index and two single images to the source.
func pushFixtures(t *testing.T, repo string) map[string]v1.Hash {
	t.Helper()
	auth := remote.WithAuth(&authn.Basic{Username: "alice", Password: password})
	digests := map[string]v1.Hash{}
	digests["1.36"] = testutil.PushIndex(t, repo+":1.36", []string{"linux/amd64", "linux/arm64/v8", "linux/s390x"}, 4096, 3, auth)
	for _, tag := range []string{"1.35", "latest"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(repo + ":" + tag)
		if err := remote.Write(ref, img, auth); err != nil {
			t.Fatal(err)
		}
		digests[tag], _ = img.Digest()
	}
	return digests
}

// TestCopyBetweenRealRegistries copies a three-platform index and single images from a
// registry with basic auth to one with TLS from a private CA, checks every digest, and
// counts the requests of a rerun: one manifest HEAD per tag on each side, nothing else.
func TestCopyBetweenRealRegistries(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "target CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cert := ca.ServerTLS(t, "127.0.0.1")
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: &cert})
	want := pushFixtures(t, src.Host+"/library/busybox")

	srcCount := &counter{counts: map[string]int{}}
	dstCount := &counter{counts: map[string]int{}}
	eng, err := imagecopy.New(
		imagecopy.Endpoint{Repository: src.Host + "/library/busybox", Auth: &authn.Basic{Username: "alice", Password: password},
			Wrap: func(rt http.RoundTripper) http.RoundTripper { srcCount.next = rt; return srcCount }},
		imagecopy.Endpoint{Repository: dst.Host + "/my-docker/busybox", CA: []byte(ca.PEM),
			Wrap: func(rt http.RoundTripper) http.RoundTripper { dstCount.next = rt; return dstCount }},
		imagecopy.Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sel, _ := tagselect.New(tagselect.Spec{Semver: ">=1.35", Tags: []string{"latest"}})
	tags, err := eng.Tags(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"1.35", "1.36", "latest"}) {
		t.Fatalf("selected %v", tags)
	}

	for _, r := range eng.Sync(ctx, tags) {
		if r.Err != nil || r.UpToDate {
			t.Errorf("cold copy of %s: %+v", r.Tag, r)
		}
		// Every byte on the wire is counted: two incompressible 2 KiB layers at least for a
		// single image (go-containerregistry's own progress counts ~600 bytes here).
		if r.Bytes < 2*2048 {
			t.Errorf("cold copy of %s counted %d bytes, want at least %d", r.Tag, r.Bytes, 2*2048)
		}
		if r.SourceDigest != want[r.Tag].String() || r.TargetDigest != r.SourceDigest {
			t.Errorf("%s: digests %s -> %s, want %s", r.Tag, r.SourceDigest, r.TargetDigest, want[r.Tag])
		}
	}
	// The target holds the same manifests, children included, checked with a fresh client.
	for tag, d := range want {
		ref, _ := name.ParseReference(dst.Host + "/my-docker/busybox:" + tag)
		desc, err := remote.Get(ref, remote.WithTransport(caTransport(t, ca.PEM)))
		if err != nil || desc.Digest != d {
			t.Errorf("target %s: %v %v, want %s", tag, desc, err, d)
			continue
		}
		if desc.MediaType.IsIndex() {
			idx, _ := desc.ImageIndex()
			im, _ := idx.IndexManifest()
			if len(im.Manifests) != 3 {
				t.Errorf("target index has %d manifests, want 3", len(im.Manifests))
			}
			for _, m := range im.Manifests {
				img, err := idx.Image(m.Digest)
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Image(img); err != nil {
					t.Errorf("platform %s: %v", m.Platform, err)
				}
			}
		}
	}

	srcCount.reset()
	dstCount.reset()
	for _, r := range eng.Sync(ctx, tags) {
		if r.Err != nil || !r.UpToDate || r.Bytes != 0 {
			t.Errorf("rerun of %s: %+v", r.Tag, r)
		}
	}
	if got := srcCount.reset(); !maps.Equal(got, map[string]int{"HEAD manifest": 3}) {
		t.Errorf("source requests of an up-to-date rerun: %v, want 3 manifest HEADs", got)
	}
	if got := dstCount.reset(); !maps.Equal(got, map[string]int{"HEAD manifest": 3}) {
		t.Errorf("target requests of an up-to-date rerun: %v, want 3 manifest HEADs", got)
	}
}

func TestErrorsNameTheSideTheReferenceAndTheStatus(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	pushFixtures(t, src.Host+"/library/busybox")
	cases := []struct {
		name    string
		srcAuth authn.Authenticator
		tag     string
		want    string
	}{
		{"a wrong source password is an auth failure on the source", &authn.Basic{Username: "alice", Password: "nope"}, "latest", "source " + src.Host + "/library/busybox:latest: Unauthorized (HTTP 401)"},
		{"a missing source tag is not found on the source", &authn.Basic{Username: "alice", Password: password}, "9.9", "source " + src.Host + "/library/busybox:9.9: Not Found (HTTP 404)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/busybox", Auth: tc.srcAuth},
				imagecopy.Endpoint{Repository: dst.Host + "/x/busybox"}, imagecopy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			r := eng.CopyTag(context.Background(), tc.tag)
			if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", r.Err, tc.want)
			}
			if strings.Contains(fmt.Sprint(r.Err), password) {
				t.Errorf("the error leaks the password: %v", r.Err)
			}
		})
	}
}

func caTransport(t *testing.T, pem string) http.RoundTripper {
	t.Helper()
	var rt http.RoundTripper
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: "x/y", CA: []byte(pem), Wrap: func(r http.RoundTripper) http.RoundTripper { rt = r; return r }},
		imagecopy.Endpoint{Repository: "x/z"}, imagecopy.Options{})
	if err != nil || eng == nil {
		t.Fatal(err)
	}
	return rt
}

func TestPlatformsFilterAnIndexIntoANewOne(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	want := pushFixtures(t, src.Host+"/library/busybox")
	srcCount := &counter{counts: map[string]int{}}
	dstCount := &counter{counts: map[string]int{}}
	platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	eng, err := imagecopy.New(
		imagecopy.Endpoint{Repository: src.Host + "/library/busybox", Auth: &authn.Basic{Username: "alice", Password: password},
			Wrap: func(rt http.RoundTripper) http.RoundTripper { srcCount.next = rt; return srcCount }},
		imagecopy.Endpoint{Repository: dst.Host + "/my-docker/busybox",
			Wrap: func(rt http.RoundTripper) http.RoundTripper { dstCount.next = rt; return dstCount }},
		imagecopy.Options{Platforms: platforms})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := eng.CopyTag(ctx, "1.36")
	if r.Err != nil || r.SourceDigest != want["1.36"].String() || r.TargetDigest == r.SourceDigest {
		t.Fatalf("filtered copy: %+v", r)
	}
	ref, _ := name.ParseReference(dst.Host + "/my-docker/busybox:1.36")
	desc, err := remote.Get(ref)
	if err != nil || desc.Digest.String() != r.TargetDigest {
		t.Fatalf("target: %v %v, want %s", desc, err, r.TargetDigest)
	}
	idx, _ := desc.ImageIndex()
	im, _ := idx.IndexManifest()
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Platform.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("target index platforms %v, want linux/amd64 and linux/arm64/v8", got)
	}
	// A single-platform image is copied as it is.
	if r := eng.CopyTag(ctx, "latest"); r.Err != nil || r.TargetDigest != want["latest"].String() {
		t.Errorf("single image with platforms set: %+v", r)
	}
	// The rerun is up to date: one manifest GET on the source (to compute the filtered
	// digest) and one HEAD on the target.
	srcCount.reset()
	dstCount.reset()
	if r := eng.CopyTag(ctx, "1.36"); r.Err != nil || !r.UpToDate {
		t.Errorf("rerun: %+v", r)
	}
	if got := srcCount.reset(); !maps.Equal(got, map[string]int{"GET manifest": 1}) {
		t.Errorf("source requests of the rerun: %v", got)
	}
	if got := dstCount.reset(); !maps.Equal(got, map[string]int{"HEAD manifest": 1}) {
		t.Errorf("target requests of the rerun: %v", got)
	}
	none, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/busybox", Auth: &authn.Basic{Username: "alice", Password: password}},
		imagecopy.Endpoint{Repository: dst.Host + "/none/busybox"}, imagecopy.Options{Platforms: []v1.Platform{{OS: "windows", Architecture: "amd64"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := none.CopyTag(ctx, "1.36"); r.Err == nil || !strings.Contains(r.Err.Error(), "no manifest of the index matches") {
		t.Errorf("platforms matching nothing: %+v", r)
	}
}

func TestReferrersAndCosignTagsAreCopied(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img, _ := random.Image(1024, 1)
	base, _ := name.ParseReference(src.Host + "/library/app:1.0")
	if err := remote.Write(base, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	mt, _ := img.MediaType()
	size, _ := img.Size()
	// An SBOM-like artifact whose subject is the image (OCI 1.1 referrers).
	sbom, _ := random.Image(256, 1)
	art := mutate.Subject(sbom, v1.Descriptor{MediaType: mt, Digest: d, Size: size}).(v1.Image)
	artDigest, _ := art.Digest()
	if err := remote.Write(testutil.Ref(t, src.Host+"/library/app@"+artDigest.String()), art); err != nil {
		t.Fatal(err)
	}
	// A cosign signature under its tag scheme.
	sig, _ := random.Image(128, 1)
	sigTag := "sha256-" + d.Hex + ".sig"
	if err := remote.Write(testutil.Ref(t, src.Host+"/library/app:"+sigTag), sig); err != nil {
		t.Fatal(err)
	}
	sigDigest, _ := sig.Digest()

	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/mirror/app"},
		imagecopy.Options{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := eng.CopyTag(context.Background(), "1.0"); r.Err != nil {
		t.Fatal(r.Err)
	}
	refs, err := remote.Referrers(testutil.Digest(t, dst.Host+"/mirror/app@"+d.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := refs.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != artDigest {
		t.Errorf("target referrers of %s: %+v, want %s", d, im.Manifests, artDigest)
	}
	got, err := remote.Head(testutil.Ref(t, dst.Host+"/mirror/app:"+sigTag))
	if err != nil || got.Digest != sigDigest {
		t.Errorf("target cosign tag %s: %v %v, want %s", sigTag, got, err, sigDigest)
	}
	// Without referrers, only the image goes.
	plain, _ := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/plain/app"}, imagecopy.Options{})
	if r := plain.CopyTag(context.Background(), "1.0"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/plain/app:"+sigTag)); err == nil {
		t.Error("the signature was copied without Referrers")
	}
}
