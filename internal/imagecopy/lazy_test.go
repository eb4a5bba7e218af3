package imagecopy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestPerTagWorkStartsOnlyAsWorkersFreeUp: a sync of thousands of tags against a source
// whose manifest checks hang holds Jobs of them under way, not a goroutine per tag; once
// the source answers, every tag gets its result.
func TestPerTagWorkStartsOnlyAsWorkersFreeUp(t *testing.T) {
	t.Parallel()
	const tags, jobs = 5000, 4
	var heads atomic.Int64
	release := make(chan struct{})
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return // 200: a registry that wants no credentials
		}
		if strings.Contains(r.URL.Path, "/manifests/") {
			heads.Add(1)
			<-release
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(src.Close)
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: strings.TrimPrefix(src.URL, "http://") + "/library/app"},
		imagecopy.Endpoint{Repository: dst.Host + "/app"}, imagecopy.Options{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, tags)
	for i := range names {
		names[i] = "t" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + string(rune('0'+i%10))
	}
	before := runtime.NumGoroutine()
	results := make(chan []imagecopy.Result, 1)
	go func() { results <- eng.Sync(context.Background(), names) }()
	testutil.Eventually(t, 10*time.Second, "the first manifest checks", func() error {
		if heads.Load() < jobs {
			return context.DeadlineExceeded
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // more would start now if they could
	if n := runtime.NumGoroutine() - before; n > 200 {
		t.Errorf("%d goroutines for a sync of %d tags at %d jobs: per-tag work started up front", n, tags, jobs)
	}
	if got := heads.Load(); got > jobs {
		t.Errorf("%d manifest checks under way, want at most %d", got, jobs)
	}
	close(release)
	select {
	case res := <-results:
		if len(res) != tags || res[tags-1].Err == nil {
			t.Errorf("%d results, the last %+v: want one per tag, each failing on the missing source", len(res), res[len(res)-1])
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the sync did not end once the source answered")
	}
}
