package imagecopy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/test/testutil"
)

// hubLimits puts Docker Hub's pull limit in front of a registry: every manifest answer,
// HEAD included, carries RateLimit-Limit and RateLimit-Remaining; a manifest GET is a
// pull and spends one.
type hubLimits struct {
	remaining atomic.Int64
	pulls     atomic.Int64
}

func (h *hubLimits) intercept(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
	if strings.Contains(r.URL.Path, "/manifests/") {
		left := h.remaining.Load()
		if r.Method == http.MethodGet {
			h.pulls.Add(1)
			left = h.remaining.Add(-1)
		}
		w.Header().Set("RateLimit-Limit", "100;w=21600")
		w.Header().Set("RateLimit-Remaining", fmt.Sprintf("%d;w=21600", max(left, 0)))
	}
	return false
}

// TestCopiesStopAtTheFloorOfASourcesPublishedPullLimitAndResumeWhenItRises: with 13 pulls
// left and a floor of 10, three of five tags are copied (a pull each) and two wait, named
// with the limit and when the wait ends at the latest; when the source shows more left,
// the rerun copies them, and an up-to-date rerun costs no pull at all.
func TestCopiesStopAtTheFloorOfASourcesPublishedPullLimitAndResumeWhenItRises(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	limits := &hubLimits{}
	limits.remaining.Store(13)
	hub := testutil.StartHostile(t, reg, limits.intercept)
	tags := []string{"1", "2", "3", "4", "5"}
	for _, tag := range tags {
		testutil.PushImage(t, reg.Host+"/library/app:"+tag, 256, 1)
	}
	cache := imagecopy.NewCache(0)
	var observed atomic.Int64
	cache.Rates.Observe = func(_ string, remaining, _ int) { observed.Store(int64(remaining)) }
	run := func() []imagecopy.Result {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: hub.Host() + "/library/app"}, imagecopy.Endpoint{Repository: dst.Host + "/m/app"},
			imagecopy.Options{Jobs: 1, Cache: cache, Bounds: imagecopy.Bounds{RateLimitFloor: 10}})
		if err != nil {
			t.Fatal(err)
		}
		return eng.Sync(context.Background(), tags)
	}

	results := run()
	var copied, waiting []string
	for _, r := range results {
		var rl *registryhttp.RateLimitError
		switch {
		case r.Err == nil:
			copied = append(copied, r.Tag)
		case errors.As(r.Err, &rl):
			waiting = append(waiting, r.Tag)
			if rl.Remaining != 10 || rl.Limit != 100 || !strings.Contains(r.Err.Error(), "10 of 100 pulls left in its 6h0m0s window") || !strings.Contains(r.Err.Error(), "at the latest") {
				t.Errorf("%s: %v", r.Tag, r.Err)
			}
		default:
			t.Errorf("%s: %v", r.Tag, r.Err)
		}
	}
	if len(copied) != 3 || len(waiting) != 2 || limits.pulls.Load() != 3 {
		t.Fatalf("copied %v, waiting %v, %d pulls: want 3 copied with 3 pulls and 2 waiting", copied, waiting, limits.pulls.Load())
	}
	if observed.Load() != 10 {
		t.Errorf("the limit observed last: %d, want 10", observed.Load())
	}
	for _, tag := range waiting {
		if _, err := remote.Head(testutil.Ref(t, dst.Host+"/m/app:"+tag)); err == nil {
			t.Errorf("%s reached the target although it waits", tag)
		}
	}

	limits.remaining.Store(50) // the window moved on
	for _, r := range run() {
		if r.Err != nil {
			t.Errorf("after the limit rose, %s: %v", r.Tag, r.Err)
		}
	}
	if limits.pulls.Load() != 5 {
		t.Errorf("%d pulls in all, want 5 (one per tag)", limits.pulls.Load())
	}
	limits.remaining.Store(0)
	for _, r := range run() {
		if r.Err != nil || !r.UpToDate {
			t.Errorf("an up-to-date rerun with no pulls left, %s: %+v", r.Tag, r)
		}
	}
	if limits.pulls.Load() != 5 {
		t.Errorf("an up-to-date rerun pulled: %d pulls in all, want 5", limits.pulls.Load())
	}
}
