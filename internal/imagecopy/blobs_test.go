package imagecopy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// uploads watches a target registry: bytes of blob upload bodies, mounts the registry
// accepted, and the most requests it had under way at once.
type uploads struct {
	next              http.RoundTripper
	bytes             atomic.Int64
	mounted           atomic.Int64
	inFlight, maxSeen atomic.Int64
}

func (u *uploads) RoundTrip(r *http.Request) (*http.Response, error) {
	n := u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	for {
		m := u.maxSeen.Load()
		if n <= m || u.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	if r.Method == http.MethodPatch || (r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/")) {
		u.bytes.Add(max(r.ContentLength, 0))
	}
	resp, err := u.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost && r.URL.Query().Get("from") != "" && resp.StatusCode == http.StatusCreated {
		u.mounted.Add(1)
	}
	return resp, err
}

// TestSharedBlobsAreTransferredOnceAndMountedAcrossRepositories copies two repositories
// whose images share a 1 MiB base layer into one target registry, with many copies under
// way at once: the base layer crosses the wire once, the second repository gets it by a
// cross-repository mount, and the target never has more requests under way than Jobs.
func TestSharedBlobsAreTransferredOnceAndMountedAcrossRepositories(t *testing.T) {
	t.Parallel()
	const baseSize = 1 << 20
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(baseSize, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	tags := []string{"a", "b", "c", "d", "e", "f"}
	testutil.PushShared(t, src.Host+"/apps/one", base, tags...)
	testutil.PushShared(t, src.Host+"/apps/two", base, tags...)

	watch := &uploads{}
	blobs := imagecopy.NewCache(0)
	const jobs = 3
	for _, repo := range []string{"one", "two"} {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/apps/" + repo},
			imagecopy.Endpoint{Repository: dst.Host + "/mirror/" + repo, Wrap: func(rt http.RoundTripper) http.RoundTripper { watch.next = rt; return watch }},
			imagecopy.Options{Jobs: jobs, Cache: blobs})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range eng.Sync(context.Background(), tags) {
			if r.Err != nil || r.UpToDate {
				t.Fatalf("%s:%s: %+v", repo, r.Tag, r)
			}
		}
	}
	// One base layer, twelve small layers, twelve configs of a few hundred bytes.
	if got := watch.bytes.Load(); got < baseSize || got >= 2*baseSize {
		t.Errorf("uploaded %d bytes; the %d-byte base layer must cross the wire exactly once", got, baseSize)
	}
	if watch.mounted.Load() < 1 {
		t.Error("no blob was mounted into the second repository")
	}
	if got := watch.maxSeen.Load(); got > jobs {
		t.Errorf("the target had %d requests under way at once, more than Jobs=%d", got, jobs)
	} else if got < 2 {
		t.Errorf("the target never had two requests under way at once (max %d): nothing ran in parallel", got)
	}
	// Both repositories hold complete images.
	for _, repo := range []string{"one", "two"} {
		for _, tag := range tags {
			img, err := remote.Image(testutil.Ref(t, dst.Host+"/mirror/"+repo+":"+tag))
			if err != nil {
				t.Fatal(err)
			}
			ls, _ := img.Layers()
			if len(ls) != 2 {
				t.Fatalf("%s:%s has %d layers", repo, tag, len(ls))
			}
			for _, l := range ls {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatalf("%s:%s layer: %v", repo, tag, err)
				}
				_ = rc.Close()
			}
		}
	}
}

// TestProgressReachesTheTotal follows one tag's progress: it only grows and ends at the
// total, which covers every blob and manifest of the image.
func TestProgressReachesTheTotal(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	d := testutil.PushIndex(t, src.Host+"/library/app:1", []string{"linux/amd64", "linux/arm64"}, 64<<10, 3)
	var mu sync.Mutex
	var last, lastTotal int64
	var calls int
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/library/app"},
		imagecopy.Options{Jobs: 4, Progress: func(tag string, done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if done < last {
				t.Errorf("progress went back from %d to %d", last, done)
			}
			last, lastTotal = done, total
		}})
	if err != nil {
		t.Fatal(err)
	}
	r := eng.CopyTag(context.Background(), "1")
	if r.Err != nil || r.TargetDigest != d.String() {
		t.Fatalf("%+v", r)
	}
	if calls == 0 || last != lastTotal || last < 6*(64<<10) {
		t.Errorf("progress ended at %d of %d after %d calls; want all of at least %d bytes", last, lastTotal, calls, 6*(64<<10))
	}
}

func mustAppend(t *testing.T, img v1.Image, layers ...v1.Layer) v1.Image {
	t.Helper()
	out, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestABlobIsNeverMountedAcrossTenants: copies of two tenants (the manager's namespaces)
// share one Cache and push images sharing a base layer into one target registry. The
// second tenant's copy asks for no mount (it uploads the layer itself) even though the
// Cache knows where the layer is; a copy of the first tenant into another repository does
// mount it; and a tenant's copy whose source is on the target registry never mounts from
// that source repository with the target's credentials.
func TestABlobIsNeverMountedAcrossTenants(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(256<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushShared(t, src.Host+"/apps/app", base, "1")
	private, err := random.Layer(64<<10, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushShared(t, dst.Host+"/team-a/private", private, "1") // on the target registry itself

	var mountAsks, fromPrivate atomic.Int64
	counting := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" {
				mountAsks.Add(1)
				if r.URL.Query().Get("from") == "team-a/private" {
					fromPrivate.Add(1)
				}
			}
			return rt.RoundTrip(r)
		})
	}
	cache := imagecopy.NewCache(0)
	copyAs := func(tenant, from, to string) {
		t.Helper()
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: from}, imagecopy.Endpoint{Repository: to, Wrap: counting},
			imagecopy.Options{Cache: cache, Tenant: tenant})
		if err != nil {
			t.Fatal(err)
		}
		if r := eng.CopyTag(context.Background(), "1"); r.Err != nil {
			t.Fatalf("%s into %s: %v", tenant, to, r.Err)
		}
	}
	copyAs("team-a", src.Host+"/apps/app", dst.Host+"/team-a/app")
	before := mountAsks.Load()
	copyAs("team-b", src.Host+"/apps/app", dst.Host+"/team-b/app")
	if got := mountAsks.Load() - before; got != 0 {
		t.Errorf("team-b's copy asked to mount %d blobs that team-a's copy wrote, want 0", got)
	}
	copyAs("team-b", dst.Host+"/team-a/private", dst.Host+"/team-b/stolen")
	if got := fromPrivate.Load(); got != 0 {
		t.Errorf("team-b's copy from a repository of the target registry asked to mount %d blobs from it, want 0", got)
	}
	before = mountAsks.Load()
	copyAs("team-a", src.Host+"/apps/app", dst.Host+"/team-a/again")
	if mountAsks.Load() == before {
		t.Error("team-a's second copy mounted nothing from team-a's first: the test proves nothing")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
