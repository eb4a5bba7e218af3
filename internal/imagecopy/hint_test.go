package imagecopy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestALostBlobIsCopiedAgainWithoutARestart: the target loses a blob after the first copy
// (garbage collection, retention). The Cache still believes the repository holds it, the
// registry refuses the next manifest that needs it, and the copy forgets the belief and
// uploads the blob again — in the same process, as the manager would.
func TestALostBlobIsCopiedAgainWithoutARestart(t *testing.T) {
	t.Parallel()
	src, dst, base := twoImagesOnOneBase(t)
	cache := imagecopy.NewCache(0)
	sync := func(tag string) imagecopy.Result {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/app"},
			imagecopy.Options{Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		return eng.CopyTag(context.Background(), tag)
	}
	if res := sync("a"); res.Err != nil {
		t.Fatal(res.Err)
	}
	digest, err := base.Digest()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, dst.URL+"/v2/app/blobs/"+digest.String(), nil)
	resp, err := (&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}).Do(req) // not DefaultTransport: parallel tests closing httptest servers close its idle connections
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("deleting the base layer from the target: %v %v", err, resp)
	}
	_ = resp.Body.Close()

	res := sync("b")
	if res.Err != nil {
		t.Fatalf("the copy after the loss: %v", res.Err)
	}
	img, err := remote.Image(testutil.Ref(t, dst.Host+"/app:b"))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("the target lacks a layer of the copied image: %v", err)
		}
		_ = rc.Close()
	}
}

// TestAStalledTransferDoesNotStallTheCopiesThatShareItsBlob: one copy's source stops
// sending a base layer halfway; another copy, from a healthy source into the same target
// registry, needs the same layer. It waits for the stalled transfer only while that makes
// progress, then moves the layer itself, and ends in about its own time plus that patience
// — long before the stalled source's stall timeout.
func TestAStalledTransferDoesNotStallTheCopiesThatShareItsBlob(t *testing.T) {
	t.Parallel()
	healthy := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(4<<20, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushShared(t, healthy.Host+"/library/app", base, "1")
	digest, _ := base.Digest()

	// The stalling source serves the same repository, but stops after 64 KiB of the base.
	stalling := testutil.StartHostile(t, healthy, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if !testutil.IsBlobGet(r, digest.String()) {
			return false
		}
		h.Stall(w, r, 4<<20)
		return true
	})

	cache := imagecopy.NewCache(0)
	engine := func(from, to string) *imagecopy.Engine {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: from}, imagecopy.Endpoint{Repository: to},
			imagecopy.Options{Cache: cache, Bounds: imagecopy.Bounds{StallTimeout: 5 * time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck := make(chan imagecopy.Result, 1)
	go func() {
		stuck <- engine(stalling.Host()+"/library/app", dst.Host+"/stuck").CopyTag(ctx, "1")
	}()
	select {
	case <-stalling.Stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the stalling source was never asked for the base layer")
	}
	start := time.Now()
	sel, err := tagselect.New(tagselect.Spec{Tags: []string{"1"}})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine(healthy.Host+"/library/app", dst.Host+"/fine")
	hctx, hcancel := context.WithTimeout(ctx, time.Minute)
	defer hcancel()
	tags, err := eng.Tags(hctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	res := eng.Sync(hctx, tags)[0]
	took := time.Since(start)
	t.Logf("the healthy copy took %s beside the stalled one", took.Round(time.Millisecond))
	if res.Err != nil {
		t.Fatalf("the healthy copy failed: %v", res.Err)
	}
	if took > 30*time.Second {
		t.Errorf("the healthy copy took %s: it waited on the stalled transfer", took)
	}
	select {
	case r := <-stuck:
		t.Fatalf("the stalled copy ended (%v) before its stall timeout: the test proves nothing", r.Err)
	default:
	}
}

// TestWhatEarlierRunsLearnedIsReadOnlyWhenABlobMoves: a run that finds every tag up to
// date never reads the hints of earlier processes (for the CLI: never opens its blob
// cache file); the first blob to transfer reads them, once.
func TestWhatEarlierRunsLearnedIsReadOnlyWhenABlobMoves(t *testing.T) {
	t.Parallel()
	src, dst, _ := twoImagesOnOneBase(t)
	run := func(tag string) (recalls int) {
		cache := imagecopy.NewCache(0)
		cache.Recall(func(func(string, v1.Hash, string, time.Time)) { recalls++ })
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/app"},
			imagecopy.Options{Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		if res := eng.CopyTag(context.Background(), tag); res.Err != nil {
			t.Fatal(res.Err)
		}
		return recalls
	}
	if n := run("a"); n != 1 {
		t.Errorf("a copy that moved blobs read the hints %d times, want once", n)
	}
	if n := run("a"); n != 0 {
		t.Errorf("a no-op read the hints %d times, want never", n)
	}
}

// twoImagesOnOneBase starts a source and a target registry; the source's library/app has
// tags a and b, two images on one base layer.
func twoImagesOnOneBase(t *testing.T) (src, dst *testutil.Registry, base v1.Layer) {
	t.Helper()
	src = testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst = testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(64<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushShared(t, src.Host+"/library/app", base, "a", "b")
	return src, dst, base
}
