package imagecopy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestATricklingSourceMeetsTheBlobDeadline: a source that sends a blob a kilobyte at a
// time never stalls, so only the transfer's deadline (base plus size at the minimum rate)
// ends it, naming that bound. Not parallel: it shortens the package's bounds.
func TestATricklingSourceMeetsTheBlobDeadline(t *testing.T) {
	base, rate := blobDeadlineBase, minTransferRate
	blobDeadlineBase, minTransferRate = 300*time.Millisecond, 1<<20
	t.Cleanup(func() { blobDeadlineBase, minTransferRate = base, rate })

	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	layer, size := testutil.FirstLayer(t, testutil.PushImage(t, src.Host+"/library/app:1", 1<<20, 1))
	trickle := testutil.StartHostile(t, src, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if !testutil.IsBlobGet(r, layer.String()) {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusOK)
		for range size >> 10 {
			if _, err := w.Write(make([]byte, 1<<10)); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(50 * time.Millisecond): // 20 KiB/s: never a stall
			}
		}
		return true
	})

	eng, err := New(Endpoint{Repository: trickle.Host() + "/library/app"}, Endpoint{Repository: dst.Host + "/app"},
		Options{StallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := eng.CopyTag(context.Background(), "1")
	took := time.Since(start)
	var be *registryhttp.BoundError
	if !errors.As(res.Err, &be) || be.Bound != "minTransferRate" {
		t.Fatalf("after %s: %v, want the minTransferRate bound", took, res.Err)
	}
	if want := blobDeadline(size); took > want+5*time.Second {
		t.Errorf("ended after %s, the deadline was %s", took, want)
	}
	t.Logf("a trickling source ended after %s: %v", took.Round(time.Millisecond), res.Err)
}
