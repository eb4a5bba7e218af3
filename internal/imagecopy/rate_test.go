package imagecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestATricklingSourceIsEndedByTheMinimumRate: a source that sends a blob a kilobyte at a
// time never stalls, so only the rolling minimum rate ends it: within about one window,
// naming that bound and the source (whose reads the transfer waited on), however large the
// blob. A blob declaring more than the size cap is refused before a byte of it moves.
func TestATricklingSourceIsEndedByTheMinimumRate(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	layer, size := testutil.FirstLayer(t, testutil.PushImage(t, src.Host+"/library/app:1", 4<<20, 1))
	var blobGets atomic.Int64
	trickle := testutil.StartHostile(t, src, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if !testutil.IsBlobGet(r, layer.String()) {
			return false
		}
		blobGets.Add(1)
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

	const stall, window = time.Second, 2 * time.Second
	eng, err := New(Endpoint{Repository: trickle.Host() + "/library/app"}, Endpoint{Repository: dst.Host + "/app"},
		Options{Bounds: Bounds{StallTimeout: stall, MinTransferRate: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := eng.CopyTag(context.Background(), "1")
	took := time.Since(start)
	var be *registryhttp.BoundError
	var se *SideError
	if !errors.As(res.Err, &be) || be.Bound != "minTransferRate" || !errors.As(res.Err, &se) || se.Side != "source" {
		t.Fatalf("after %s: %v, want the source's minTransferRate bound", took, res.Err)
	}
	if took > 3*window+5*time.Second { // retries of the whole blob may each take a window
		t.Errorf("ended after %s, the window is %s", took, window)
	}
	t.Logf("a trickling source ended after %s: %v", took.Round(time.Millisecond), res.Err)

	gets := blobGets.Load()
	eng, err = New(Endpoint{Repository: trickle.Host() + "/library/app"}, Endpoint{Repository: dst.Host + "/capped"},
		Options{Bounds: Bounds{StallTimeout: stall, MaxBlobBytes: size - 1}})
	if err != nil {
		t.Fatal(err)
	}
	res = eng.CopyTag(context.Background(), "1")
	if !errors.As(res.Err, &be) || be.Bound != "maxBlobBytes" || !errors.As(res.Err, &se) || se.Side != "source" {
		t.Fatalf("a blob over the size cap: %v, want the source's maxBlobBytes bound", res.Err)
	}
	if got := blobGets.Load() - gets; got != 0 {
		t.Errorf("the source was asked for the blob %d times over the size cap, want 0", got)
	}
}

// TestASlowTargetIsNamedByTheMinimumRate: a target that reads an upload at 3.2 MiB/s, under a
// minimum of 8 MiB/s, fails the same bound, and the error names the target, not the source
// it read from. (Slower, and the kernel's socket buffers hide its progress for longer than
// the stall timeout: it is then a stall.)
func TestASlowTargetIsNamedByTheMinimumRate(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushImage(t, src.Host+"/library/app:1", 32<<20, 1)
	slow := testutil.StartHostile(t, dst, func(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		head, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil || len(head) < 64<<10 { // a small blob: the registry takes it
			r.Body = io.NopCloser(bytes.NewReader(head))
			return false
		}
		buf := make([]byte, 256<<10)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(80 * time.Millisecond) {
			if _, err := io.ReadFull(r.Body, buf); err != nil { // 3.2 MiB/s: never a stall
				break
			}
		}
		return true // no answer: the client has given up by now
	})
	eng, err := New(Endpoint{Repository: src.Host + "/library/app"}, Endpoint{Repository: slow.Host() + "/app"},
		Options{Bounds: Bounds{StallTimeout: 2 * time.Second, MinTransferRate: 8 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	res := eng.CopyTag(context.Background(), "1")
	var be *registryhttp.BoundError
	var se *SideError
	if !errors.As(res.Err, &be) || be.Bound != "minTransferRate" || !errors.As(res.Err, &se) || se.Side != "target" {
		t.Fatalf("%v, want the target's minTransferRate bound", res.Err)
	}
	t.Logf("a slow target: %v", res.Err)
}
