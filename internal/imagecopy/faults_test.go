package imagecopy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// faultProxy sits in front of a registry and fails about a fifth of the requests: 503,
// 429 with Retry-After, or a connection closed without an answer.
type faultProxy struct {
	proxy  *httputil.ReverseProxy
	mu     sync.Mutex
	rng    *rand.Rand
	faults map[string]*atomic.Int64
	// all adds slow answers and bodies cut short to the mix (still a fifth in all).
	all bool
}

func newFaultProxy(t *testing.T, target string) *httptest.Server {
	t.Helper()
	return startFaultProxy(t, target, false)
}

func startFaultProxy(t *testing.T, target string, all bool) *httptest.Server {
	t.Helper()
	u, _ := url.Parse(target)
	fp := &faultProxy{
		proxy: httputil.NewSingleHostReverseProxy(u),
		rng:   rand.New(rand.NewPCG(1, 2)), // deterministic
		faults: map[string]*atomic.Int64{
			"503": {}, "429": {}, "drop": {}, "slow": {}, "truncated": {},
		},
		all: all,
	}
	srv := httptest.NewServer(fp)
	t.Cleanup(func() {
		srv.Close()
		t.Logf("faults injected: 503=%d 429=%d dropped=%d slow=%d truncated=%d", fp.faults["503"].Load(), fp.faults["429"].Load(), fp.faults["drop"].Load(),
			fp.faults["slow"].Load(), fp.faults["truncated"].Load())
		if fp.faults["503"].Load()+fp.faults["429"].Load()+fp.faults["drop"].Load() == 0 {
			t.Error("the fault proxy injected no fault; the test proves nothing")
		}
	})
	return srv
}

func (fp *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fp.mu.Lock()
	roll := fp.rng.IntN(100)
	fp.mu.Unlock()
	if fp.all {
		switch {
		case roll < 4:
			fp.faults["slow"].Add(1)
			time.Sleep(300 * time.Millisecond)
			fp.proxy.ServeHTTP(w, r)
			return
		case roll < 8:
			fp.faults["truncated"].Add(1)
			fp.proxy.ServeHTTP(&truncating{ResponseWriter: w}, r)
			return
		case roll < 20:
			roll = (roll - 8) * 20 / 12 // the other faults share the rest of the fifth
		default:
			fp.proxy.ServeHTTP(w, r)
			return
		}
	}
	switch {
	case roll < 7:
		fp.faults["503"].Add(1)
		http.Error(w, "injected", http.StatusServiceUnavailable)
	case roll < 12:
		fp.faults["429"].Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "injected", http.StatusTooManyRequests)
	case roll < 20:
		fp.faults["drop"].Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		http.Error(w, "injected", http.StatusBadGateway)
	default:
		fp.proxy.ServeHTTP(w, r)
	}
}

// truncating sends half of a response body, then closes the connection.
type truncating struct {
	http.ResponseWriter
	sent int64
	done bool
}

func (w *truncating) Write(p []byte) (int, error) {
	if w.done {
		return 0, io.ErrClosedPipe
	}
	limit := int64(1)
	if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && n > 1 {
		limit = n / 2
	}
	if w.sent+int64(len(p)) < limit {
		w.sent += int64(len(p))
		return w.ResponseWriter.Write(p)
	}
	k, _ := w.ResponseWriter.Write(p[:limit-w.sent])
	w.sent += int64(k)
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	w.done = true
	if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
		}
	}
	return k, io.ErrClosedPipe
}

// TestCopyCompletesThroughFaults copies through a proxy that fails a fifth of the target's
// requests; every tag must end digest-equal to the source, as read from the registry itself.
func TestCopyCompletesThroughFaults(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	want := pushFixtures(t, src.Host+"/library/busybox")
	proxy := newFaultProxy(t, dst.URL)
	proxyHost := proxy.Listener.Addr().String()

	eng, err := imagecopy.New(
		imagecopy.Endpoint{Repository: src.Host + "/library/busybox", Auth: &authn.Basic{Username: "alice", Password: password}},
		imagecopy.Endpoint{Repository: proxyHost + "/my-docker/busybox"},
		// A blob upload is four requests (HEAD, POST, PATCH, PUT), retried as a whole: at a
		// fifth of requests failing, one try fails 59% of the time, and eight in a row about
		// once in seventy blobs. Twelve make it about once in six hundred.
		imagecopy.Options{Jobs: 3, Backoff: remote.Backoff{Duration: 20 * time.Millisecond, Factor: 1.5, Steps: 12}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, r := range eng.Sync(ctx, []string{"1.35", "1.36", "latest"}) {
		if r.Err != nil {
			t.Errorf("%s failed through faults: %v", r.Tag, r.Err)
		}
	}
	for tag, d := range want {
		ref, _ := name.ParseReference(dst.Host + "/my-docker/busybox:" + tag)
		desc, err := remote.Get(ref)
		if err != nil || desc.Digest != d {
			t.Errorf("target %s: %v %v, want %s", tag, desc, err, d)
		}
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var first time.Time
	var gap time.Duration
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if gap == 0 {
			gap = time.Since(first)
		}
		w.WriteHeader(http.StatusNotFound) // "no such tag": an answer, not a fault
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: host + "/a/b"}, imagecopy.Endpoint{Repository: host + "/c/d"},
		imagecopy.Options{Backoff: remote.Backoff{Duration: time.Millisecond, Steps: 3}})
	if err != nil {
		t.Fatal(err)
	}
	_ = eng.CopyTag(context.Background(), "x")
	if gap < 900*time.Millisecond {
		t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
	}
}

// TestAProxyRefusingLargeBodiesIsNamed is the README troubleshooting row "413 through the
// proxy": a proxy with nginx's default body limit answers blob uploads with 413, and the
// tag's error says so, on the target side.
func TestAProxyRefusingLargeBodiesIsNamed(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	u, _ := url.Parse(dst.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch || (r.Method == http.MethodPut && r.ContentLength > 1<<20) {
			http.Error(w, "<html><body>413 Request Entity Too Large</body></html>", http.StatusRequestEntityTooLarge)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer limited.Close()
	img, _ := random.Image(2<<20, 1)
	if err := remote.Write(testutil.Ref(t, src.Host+"/library/big:1"), img); err != nil {
		t.Fatal(err)
	}
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/big"},
		imagecopy.Endpoint{Repository: strings.TrimPrefix(limited.URL, "http://") + "/my-docker/big"}, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := eng.CopyTag(context.Background(), "1")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "Request Entity Too Large (HTTP 413)") || !strings.HasPrefix(r.Err.Error(), "target ") {
		t.Errorf("err = %v, want a target error naming HTTP 413", r.Err)
	}
}

// TestTwoHundredImagesThroughFaultsOnBothSides syncs 200 tags through fault proxies in front
// of both registries (a fifth of the requests: 503, 429 with Retry-After, dropped
// connections, slow answers, bodies cut short): every tag ends digest-equal to the source or
// failed with a reason naming the side, and no manifest in the target points at a blob the
// target does not have.
func TestTwoHundredImagesThroughFaultsOnBothSides(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	const n = 200
	tags := make([]string, n)
	want := map[string]string{}
	for i := range n {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		tags[i] = fmt.Sprintf("v%03d", i)
		if err := remote.Write(testutil.Ref(t, src.Host+"/library/many:"+tags[i]), img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		want[tags[i]] = d.String()
	}
	srcProxy := startFaultProxy(t, src.URL, true)
	dstProxy := startFaultProxy(t, dst.URL, true)
	eng, err := imagecopy.New(
		imagecopy.Endpoint{Repository: srcProxy.Listener.Addr().String() + "/library/many"},
		imagecopy.Endpoint{Repository: dstProxy.Listener.Addr().String() + "/mirror/many"},
		imagecopy.Options{Jobs: 16, Backoff: remote.Backoff{Duration: 20 * time.Millisecond, Factor: 2, Steps: 8}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	copied, failed := 0, 0
	for _, r := range eng.Sync(ctx, tags) {
		switch {
		case r.Err != nil:
			failed++
			if failed <= 3 {
				t.Logf("%s failed: %v", r.Tag, r.Err)
			}
			var se *imagecopy.SideError
			if !errors.As(r.Err, &se) || se.Ref == "" {
				t.Errorf("%s failed without naming the side and reference: %v", r.Tag, r.Err)
			}
		case r.TargetDigest != want[r.Tag]:
			t.Errorf("%s: target digest %s, want %s", r.Tag, r.TargetDigest, want[r.Tag])
		default:
			copied++
		}
	}
	// What the target holds, read straight from it: complete images only.
	present, err := remote.List(testutil.Repo(t, dst.Host+"/mirror/many"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range present {
		img, err := remote.Image(testutil.Ref(t, dst.Host+"/mirror/many:"+tag))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img, validate.Fast); err != nil {
			t.Errorf("target %s points at what it does not hold: %v", tag, err)
		}
		if d, _ := img.Digest(); d.String() != want[tag] {
			t.Errorf("target %s is %s, want %s", tag, d, want[tag])
		}
	}
	t.Logf("%d of %d tags copied through faults, %d failed with a reason; the target holds %d complete images", copied, n, failed, len(present))
	if copied < n*9/10 {
		t.Errorf("only %d of %d tags made it through a fifth of failed requests", copied, n)
	}
}
