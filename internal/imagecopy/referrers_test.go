package imagecopy_test

import (
	"context"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// attach pushes to repo an artifact whose subject is the manifest d (OCI 1.1 referrers;
// a registry without the referrers API gets the sha256-<hex> fallback tag from
// go-containerregistry) and returns its digest.
func attach(t *testing.T, repo string, d v1.Descriptor, opts ...remote.Option) v1.Hash {
	t.Helper()
	art, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	withSubject := mutate.Subject(art, v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}).(v1.Image)
	ad, _ := withSubject.Digest()
	if err := remote.Write(testutil.Ref(t, repo+"@"+ad.String()), withSubject, opts...); err != nil {
		t.Fatal(err)
	}
	return ad
}

// sign pushes a cosign-style signature for d under sha256-<hex>.sig and returns its digest.
func sign(t *testing.T, repo string, d v1.Hash, opts ...remote.Option) v1.Hash {
	t.Helper()
	sig, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(testutil.Ref(t, repo+":sha256-"+d.Hex+".sig"), sig, opts...); err != nil {
		t.Fatal(err)
	}
	sd, _ := sig.Digest()
	return sd
}

// TestReferrersOfAnIndexAreCopiedAndARerunCostsTwoRequestsPerTag copies a signed
// three-platform index with an SBOM-like referrer between a registry with basic auth and
// one with TLS from a private CA, then reruns with a new Engine (as a new `regwire sync`
// would): every tag, referrer tags included, costs one manifest HEAD on each side; the
// rest is per run (pings, the tag listing, the referrers API probe).
func TestReferrersOfAnIndexAreCopiedAndARerunCostsTwoRequestsPerTag(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "target CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cert := ca.ServerTLS(t, "127.0.0.1")
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: &cert})
	auth := &authn.Basic{Username: "alice", Password: password}
	repo := src.Host + "/library/app"
	idx := testutil.PushIndex(t, repo+":1.0", []string{"linux/amd64", "linux/arm64", "linux/s390x"}, 4096, 2, remote.WithAuth(auth))
	desc, err := remote.Head(testutil.Ref(t, repo+":1.0"), remote.WithAuth(auth))
	if err != nil {
		t.Fatal(err)
	}
	sbom := attach(t, repo, *desc, remote.WithAuth(auth))
	sig := sign(t, repo, idx, remote.WithAuth(auth))
	// An unrelated, unselected image with its own signature stays behind.
	other := testutil.PushIndex(t, repo+":0.9", []string{"linux/amd64"}, 1024, 1, remote.WithAuth(auth))
	sign(t, repo, other, remote.WithAuth(auth))

	sel, _ := tagselect.New(tagselect.Spec{Tags: []string{"1.0"}})
	cache := imagecopy.NewCache(0) // what the controller keeps between runs
	run := func(cache *imagecopy.Cache) ([]imagecopy.Result, map[string]int, map[string]int) {
		srcCount, dstCount := &counter{counts: map[string]int{}}, &counter{counts: map[string]int{}}
		eng, err := imagecopy.New(
			imagecopy.Endpoint{Repository: repo, Auth: auth, Wrap: func(rt http.RoundTripper) http.RoundTripper { srcCount.next = rt; return srcCount }},
			imagecopy.Endpoint{Repository: dst.Host + "/mirror/app", CA: []byte(ca.PEM), Wrap: func(rt http.RoundTripper) http.RoundTripper { dstCount.next = rt; return dstCount }},
			imagecopy.Options{Referrers: true, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		tags, err := eng.Tags(context.Background(), sel)
		if err != nil {
			t.Fatal(err)
		}
		return eng.Sync(context.Background(), tags), srcCount.reset(), dstCount.reset()
	}

	res, _, _ := run(cache)
	if len(res) != 1 || res[0].Err != nil || res[0].UpToDate || res[0].TargetDigest != idx.String() {
		t.Fatalf("first run: %+v", res)
	}
	// The fallback tag and the signature tag.
	if res[0].Referrers != 2 {
		t.Errorf("referrers checked: %d, want 2 (the OCI fallback tag and the cosign signature)", res[0].Referrers)
	}
	dt := caTransport(t, ca.PEM)
	refs, err := remote.Referrers(testutil.Digest(t, dst.Host+"/mirror/app@"+idx.String()), remote.WithTransport(dt))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := refs.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != sbom {
		t.Errorf("target referrers of the index: %+v, want %s", im.Manifests, sbom)
	}
	if got, err := remote.Head(testutil.Ref(t, dst.Host+"/mirror/app:sha256-"+idx.Hex+".sig"), remote.WithTransport(dt)); err != nil || got.Digest != sig {
		t.Errorf("target signature: %v %v, want %s", got, err, sig)
	}
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/mirror/app:sha256-"+other.Hex+".sig"), remote.WithTransport(dt)); err == nil {
		t.Error("the signature of an unselected tag was copied")
	}

	res, srcReqs, dstReqs := run(cache)
	if len(res) != 1 || res[0].Err != nil || !res[0].UpToDate || res[0].Bytes != 0 || res[0].Referrers != 2 {
		t.Fatalf("rerun: %+v", res)
	}
	// Three tags: 1.0, sha256-<idx> (the fallback index) and sha256-<idx>.sig.
	if srcReqs["HEAD manifest"] != 3 || dstReqs["HEAD manifest"] != 3 {
		t.Errorf("manifest HEADs of the rerun: source %d, target %d; want 3 each", srcReqs["HEAD manifest"], dstReqs["HEAD manifest"])
	}
	// Per run: the source's ping (two requests: HTTPS first, and this loopback registry
	// speaks plain HTTP), its tag listing and the referrers API probe (a 404 here, so
	// go-containerregistry reads the fallback tag); the target's ping.
	if want := map[string]int{"HEAD manifest": 3, "GET other": 4, "GET manifest": 1}; !maps.Equal(srcReqs, want) {
		t.Errorf("source requests of the rerun: %v, want %v", srcReqs, want)
	}
	if want := map[string]int{"HEAD manifest": 3, "GET other": 1}; !maps.Equal(dstReqs, want) {
		t.Errorf("target requests of the rerun: %v, want %v", dstReqs, want)
	}

	// A new process (the CLI) does not know what the two indexes (1.0 and its fallback
	// tag) list: the unselected tag's signature might belong to one of their platforms, so
	// each is read once.
	res, srcReqs, _ = run(nil)
	if len(res) != 1 || res[0].Err != nil || !res[0].UpToDate || res[0].Referrers != 2 {
		t.Fatalf("rerun without a cache: %+v", res)
	}
	if want := map[string]int{"HEAD manifest": 3, "GET manifest": 1 + 2, "GET other": 4}; !maps.Equal(srcReqs, want) {
		t.Errorf("source requests of a rerun without a cache: %v, want %v", srcReqs, want)
	}
}

// TestSignaturesOfPlatformsAreFoundWhenTheIndexIsUpToDate signs one platform of an index
// after the index was copied: the rerun reads the index (the one extra request) to learn
// that the new signature belongs to it, and copies it.
func TestSignaturesOfPlatformsAreFoundWhenTheIndexIsUpToDate(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	repo := src.Host + "/library/app"
	idx := testutil.PushIndex(t, repo+":1.0", []string{"linux/amd64", "linux/arm64"}, 1024, 1)
	newEngine := func() *imagecopy.Engine {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: repo}, imagecopy.Endpoint{Repository: dst.Host + "/mirror/app"}, imagecopy.Options{Referrers: true})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	if r := newEngine().CopyTag(context.Background(), "1.0"); r.Err != nil || r.UpToDate {
		t.Fatalf("first copy: %+v", r)
	}
	ii, _ := remote.Index(testutil.Ref(t, repo+":1.0"))
	im, _ := ii.IndexManifest()
	child := im.Manifests[1].Digest
	sig := sign(t, repo, child)

	r := newEngine().CopyTag(context.Background(), "1.0")
	if r.Err != nil || !r.UpToDate || r.Referrers != 1 || r.Bytes == 0 {
		t.Fatalf("rerun after signing a platform: %+v", r)
	}
	if got, err := remote.Head(testutil.Ref(t, dst.Host+"/mirror/app:sha256-"+child.Hex+".sig")); err != nil || got.Digest != sig {
		t.Errorf("target signature of %s: %v %v, want %s", child, got, err, sig)
	}
	_ = idx
}

// TestReferrersAPIOfTheSourceIsUsed copies from a registry that serves the OCI referrers
// API (go-containerregistry's registry, which keeps no fallback tags) into one that does
// not: the referrer reaches the target, listed under its fallback tag.
func TestReferrersAPIOfTheSourceIsUsed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	srcHost := strings.TrimPrefix(srv.URL, "http://")
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img, _ := random.Image(1024, 1)
	if err := remote.Write(testutil.Ref(t, srcHost+"/library/app:1.0"), img); err != nil {
		t.Fatal(err)
	}
	desc, _ := remote.Head(testutil.Ref(t, srcHost+"/library/app:1.0"))
	art := attach(t, srcHost+"/library/app", *desc)
	tags, _ := remote.List(testutil.Repo(t, srcHost+"/library/app"))
	if slices.ContainsFunc(tags, func(s string) bool { return strings.HasPrefix(s, "sha256-") }) {
		t.Fatalf("the source keeps fallback tags %v; this test needs a registry that serves the referrers API alone", tags)
	}
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: srcHost + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/mirror/app"}, imagecopy.Options{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := eng.CopyTag(context.Background(), "1.0"); r.Err != nil || r.Referrers != 1 {
		t.Fatalf("copy: %+v", r)
	}
	refs, err := remote.Referrers(testutil.Digest(t, dst.Host+"/mirror/app@"+desc.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := refs.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != art {
		t.Errorf("target referrers: %+v, want %s", im.Manifests, art)
	}
}

// TestASourceRefusingTheReferrersAPIFallsBackToTags: registries without the referrers API
// should answer 404, but some answer 405 or 501 (Nexus documents no referrers API); the
// OCI distribution spec lets clients fall back to the sha256-<hex> tags either way, and so
// does regwire: the signature is copied by its tag.
func TestASourceRefusingTheReferrersAPIFallsBackToTags(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusMethodNotAllowed, http.StatusNotImplemented} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			src := testutil.StartRegistry(t, testutil.RegistryOptions{})
			dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
			img, err := random.Image(512, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(testutil.Ref(t, src.Host+"/library/app:1"), img); err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			sig := sign(t, src.Host+"/library/app", d)
			h := testutil.StartHostile(t, src, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/referrers/") {
					return false
				}
				w.WriteHeader(status)
				return true
			})
			eng, err := imagecopy.New(imagecopy.Endpoint{Repository: h.Host() + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/app"},
				imagecopy.Options{Referrers: true})
			if err != nil {
				t.Fatal(err)
			}
			if r := eng.CopyTag(context.Background(), "1"); r.Err != nil || r.Referrers != 1 {
				t.Fatalf("copy with a source answering %d to the referrers API: %+v", status, r)
			}
			if got, err := remote.Head(testutil.Ref(t, dst.Host+"/app:sha256-"+d.Hex+".sig")); err != nil || got.Digest != sig {
				t.Errorf("the signature did not reach the target: %v %v", got, err)
			}
		})
	}
}
