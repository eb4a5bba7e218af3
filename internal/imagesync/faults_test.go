package imagesync_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagesync"
	"github.com/regwire/regwire/internal/testutil"
)

// faultProxy sits in front of a registry and fails about a fifth of the requests: 503,
// 429 with Retry-After, or a connection closed without an answer.
type faultProxy struct {
	proxy  *httputil.ReverseProxy
	mu     sync.Mutex
	rng    *rand.Rand
	faults map[string]*atomic.Int64
}

func newFaultProxy(t *testing.T, target string) *httptest.Server {
	t.Helper()
	u, _ := url.Parse(target)
	fp := &faultProxy{
		proxy: httputil.NewSingleHostReverseProxy(u),
		rng:   rand.New(rand.NewPCG(1, 2)), // deterministic
		faults: map[string]*atomic.Int64{
			"503": {}, "429": {}, "drop": {},
		},
	}
	srv := httptest.NewServer(fp)
	t.Cleanup(func() {
		srv.Close()
		t.Logf("faults injected: 503=%d 429=%d dropped=%d", fp.faults["503"].Load(), fp.faults["429"].Load(), fp.faults["drop"].Load())
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

// TestCopyCompletesThroughFaults copies through a proxy that fails a fifth of the target's
// requests; every tag must end digest-equal to the source, as read from the registry itself.
func TestCopyCompletesThroughFaults(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	want := seed(t, src.Host+"/library/busybox")
	proxy := newFaultProxy(t, dst.URL)
	proxyHost := proxy.Listener.Addr().String()

	eng, err := imagesync.New(
		imagesync.Endpoint{Repository: src.Host + "/library/busybox", Auth: &authn.Basic{Username: "alice", Password: password}},
		imagesync.Endpoint{Repository: proxyHost + "/my-docker/busybox"},
		imagesync.Options{Jobs: 3, Backoff: remote.Backoff{Duration: 20 * time.Millisecond, Factor: 2, Steps: 8}})
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
	eng, err := imagesync.New(imagesync.Endpoint{Repository: host + "/a/b"}, imagesync.Endpoint{Repository: host + "/c/d"},
		imagesync.Options{Backoff: remote.Backoff{Duration: time.Millisecond, Steps: 3}})
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
	if err := remote.Write(mustRef(t, src.Host+"/library/big:1"), img); err != nil {
		t.Fatal(err)
	}
	eng, err := imagesync.New(imagesync.Endpoint{Repository: src.Host + "/library/big"},
		imagesync.Endpoint{Repository: strings.TrimPrefix(limited.URL, "http://") + "/my-docker/big"}, imagesync.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := eng.CopyTag(context.Background(), "1")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "Request Entity Too Large (HTTP 413)") || !strings.HasPrefix(r.Err.Error(), "target ") {
		t.Errorf("err = %v, want a target error naming HTTP 413", r.Err)
	}
}
