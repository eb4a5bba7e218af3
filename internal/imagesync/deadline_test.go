package imagesync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/testutil"
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
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(src.Host + "/library/app:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	u, _ := url.Parse(src.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	done := make(chan struct{})
	trickle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(http.StatusOK)
		for range size >> 10 {
			if _, err := w.Write(make([]byte, 1<<10)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-done:
				return
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond): // 20 KiB/s: never a stall
			}
		}
	}))
	t.Cleanup(trickle.Close)
	t.Cleanup(func() { close(done) })

	eng, err := New(Endpoint{Repository: strings.TrimPrefix(trickle.URL, "http://") + "/library/app"}, Endpoint{Repository: dst.Host + "/app"},
		Options{StallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := eng.CopyTag(context.Background(), "1")
	took := time.Since(start)
	var be *BoundError
	if !errors.As(res.Err, &be) || be.Bound != "minTransferRate" {
		t.Fatalf("after %s: %v, want the minTransferRate bound", took, res.Err)
	}
	if want := blobDeadline(size); took > want+5*time.Second {
		t.Errorf("ended after %s, the deadline was %s", took, want)
	}
	t.Logf("a trickling source ended after %s: %v", took.Round(time.Millisecond), res.Err)
}
