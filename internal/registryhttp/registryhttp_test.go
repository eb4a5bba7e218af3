package registryhttp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/regwire/regwire/api/v1alpha1"
)

// roundTripFunc is a transport written inline.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(code int, body string, header ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}

// get sends one request through rt, reads the whole answer and says its status.
func get(t *testing.T, ctx context.Context, rt http.RoundTripper, method, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return resp.StatusCode, err
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestRetryAfterIsReadAsSecondsOrADate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, value string
		want        time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"an HTTP date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"nothing", "", 0},
		{"something else", "soon", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := retryAfter(tc.value, now); got != tc.want {
				t.Errorf("retryAfter(%q) = %s, want %s", tc.value, got, tc.want)
			}
		})
	}
}

func TestATooManyRequestsAnswerIsHeldAsLongAsTheRegistryAsks(t *testing.T) {
	t.Parallel()
	rt := WithRetryAfter(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return answer(http.StatusTooManyRequests, "", "Retry-After", "1"), nil
	}))
	start := time.Now()
	code, err := get(t, context.Background(), rt, http.MethodGet, "http://registry/v2/")
	if err != nil || code != http.StatusTooManyRequests {
		t.Fatalf("answer %d, error %v", code, err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("handed back after %s, before the second the registry asked for", took)
	}
}

func TestAPathPrefixServesTheAPIOfItsHostOnly(t *testing.T) {
	t.Parallel()
	var seen []string
	rt := WithPathPrefix("nexus.local", "/repository/my-docker/v2", roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.URL.Host+r.URL.Path)
		return answer(http.StatusOK, ""), nil
	}))
	for _, u := range []string{
		"https://nexus.local/v2/",
		"https://nexus.local/v2/app/manifests/1.0",
		"https://nexus.local/repository/my-docker/v2/app/blobs/uploads/1", // a Location handed back
		"https://other.local/v2/app/manifests/1.0",
	} {
		if _, err := get(t, context.Background(), rt, http.MethodGet, u); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"nexus.local/repository/my-docker/v2/",
		"nexus.local/repository/my-docker/v2/app/manifests/1.0",
		"nexus.local/repository/my-docker/v2/app/blobs/uploads/1",
		"other.local/v2/app/manifests/1.0",
	}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("requests went to\n%v\nwant\n%v", seen, want)
	}
}

func TestCountingCountsRequestsUploadsAndTheReferrersAPI(t *testing.T) {
	t.Parallel()
	requests := &Requests{}
	status := http.StatusNotFound
	rt := Counting(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		if strings.Contains(r.URL.Path, "/referrers/") {
			return answer(status, ""), nil
		}
		return answer(http.StatusAccepted, ""), nil
	}), requests)
	var uploaded atomic.Int64
	ctx := CountUploads(context.Background(), func(n int64) { uploaded.Add(n) })
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, "http://registry/v2/app/blobs/uploads/1", strings.NewReader("0123456789"))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if _, err := get(t, ctx, rt, http.MethodHead, "http://registry/v2/app/manifests/1.0"); err != nil {
		t.Fatal(err)
	}
	if requests.ReferrersAPI() != ReferrersNotAsked {
		t.Errorf("referrers API %v before it was asked", requests.ReferrersAPI())
	}
	if _, err := get(t, ctx, rt, http.MethodGet, "http://registry/v2/app/referrers/sha256:1"); err != nil {
		t.Fatal(err)
	}
	if requests.ReferrersAPI() != ReferrersMissing {
		t.Errorf("referrers API %v after a 404, want missing", requests.ReferrersAPI())
	}
	status = http.StatusOK
	if _, err := get(t, ctx, rt, http.MethodGet, "http://registry/v2/app/referrers/sha256:1"); err != nil {
		t.Fatal(err)
	}
	if requests.ReferrersAPI() != ReferrersServed {
		t.Errorf("referrers API %v after a 200, want served", requests.ReferrersAPI())
	}
	if requests.All.Load() != 4 || requests.ManifestHeads.Load() != 1 || uploaded.Load() != 10 {
		t.Errorf("counted %d requests, %d manifest HEADs, %d bytes uploaded; want 4, 1, 10", requests.All.Load(), requests.ManifestHeads.Load(), uploaded.Load())
	}
}

func TestBoundsRefuseWhatNoRegistryShouldAnswer(t *testing.T) {
	t.Parallel()
	const manifest = `{"schemaVersion":2}`
	for _, tc := range []struct {
		name   string
		answer func(*http.Request) *http.Response
		url    string
		ctx    func(context.Context) context.Context
		want   string
	}{
		{
			name: "a manifest whose bytes are not its advertised digest",
			answer: func(*http.Request) *http.Response {
				return answer(http.StatusOK, manifest, "Docker-Content-Digest", digestOf("other"))
			},
			url:  "http://registry/v2/app/manifests/1.0",
			want: "the registry says its digest is " + digestOf("other"),
		},
		{
			name:   "a manifest asked for by digest that answers other bytes",
			answer: func(*http.Request) *http.Response { return answer(http.StatusOK, manifest) },
			url:    "http://registry/v2/app/manifests/" + digestOf("asked"),
			want:   "asked for " + digestOf("asked"),
		},
		{
			name: "a manifest larger than the OCI distribution spec allows",
			answer: func(*http.Request) *http.Response {
				return answer(http.StatusOK, strings.Repeat("x", maxManifestBytes+1))
			},
			url:  "http://registry/v2/app/manifests/1.0",
			want: "(bound: maxManifestBytes)",
		},
		{
			name: "a tag listing whose next page is itself",
			answer: func(r *http.Request) *http.Response {
				return answer(http.StatusOK, `{"tags":["a"]}`, "Link", `<`+r.URL.Path+`>; rel="next"`)
			},
			url:  "http://registry/v2/app/tags/list",
			ctx:  WithListing,
			want: "the tag listing loops",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := Bounded(roundTripFunc(func(r *http.Request) (*http.Response, error) { return tc.answer(r), nil }), time.Minute, false)
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx(ctx)
			}
			_, err := get(t, ctx, rt, http.MethodGet, tc.url)
			if tc.ctx != nil && err == nil { // the same page again, as a client following Link would ask
				_, err = get(t, ctx, rt, http.MethodGet, tc.url)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestARegistryThatGoesSilentIsCutOffAfterTheStallTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		<-release // then nothing more
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	rt := Bounded(http.DefaultTransport, 300*time.Millisecond, false)
	start := time.Now()
	_, err := get(t, context.Background(), rt, http.MethodGet, srv.URL+"/v2/app/blobs/sha256:1")
	var se *StallError
	if !errors.As(err, &se) || se.Phase != "body" {
		t.Fatalf("error %v, want a StallError while waiting for the body", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cut off after %s, want about the stall timeout", took)
	}
}

func TestTimeSpentWaitingOnRegwireIsNoStall(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	rt := Bounded(http.DefaultTransport, 200*time.Millisecond, false)
	// A body that regwire itself is slow to produce (as when it streams from the other
	// registry): 600 ms of its own silence, three stall timeouts.
	pr, pw := io.Pipe()
	go func() {
		for range 3 {
			time.Sleep(200 * time.Millisecond)
			_, _ = pw.Write([]byte("chunk"))
		}
		_ = pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v2/app/blobs/uploads/1", pr)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("an upload regwire fed slowly failed: %v", err)
	}
	defer resp.Body.Close()
}

func TestBlobContentsAndTheRestTakeTheirOwnConnections(t *testing.T) {
	t.Parallel()
	// splitTransport's choice, request by request (the protocols themselves are checked
	// against a registry offering HTTP/2 in imagecopy's TestBlobContentsTravelOverHTTP1AndTheRestOverHTTP2).
	for _, tc := range []struct {
		method, path string
		bulk         bool
	}{
		{http.MethodGet, "/v2/app/blobs/sha256:1", true},
		{http.MethodPatch, "/v2/app/blobs/uploads/1", true},
		{http.MethodHead, "/v2/app/blobs/sha256:1", false},
		{http.MethodGet, "/v2/app/manifests/1.0", false},
		{http.MethodGet, "/v2/app/tags/list", false},
	} {
		req, err := http.NewRequest(tc.method, "https://registry"+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := carriesBlobContents(req); got != tc.bulk {
			t.Errorf("%s %s over the HTTP/1.1 pool: %t, want %t", tc.method, tc.path, got, tc.bulk)
		}
	}
}

func TestThePoolSharesOneTransportPerSettingAndOnePingPerSession(t *testing.T) {
	t.Parallel()
	p := &Pool{}
	a, _ := p.Transport(nil, false, nil, nil)
	b, _ := p.Transport(nil, false, map[string]string{}, nil)
	c, _ := p.Transport(nil, true, nil, nil)
	d, _ := p.Transport(nil, false, map[string]string{"nexus.local": "127.0.0.1"}, nil)
	if a != b || a == c || a == d {
		t.Errorf("transports: the same settings share one, others do not (a==b %t, a==c %t, a==d %t)", a == b, a == c, a == d)
	}
	if _, err := p.Transport([]byte("not a certificate"), false, nil, nil); err == nil {
		t.Error("a CA that is no certificate was taken")
	}

	var pings atomic.Int32
	fail := atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pings.Add(1)
		time.Sleep(50 * time.Millisecond) // callers pile up behind the first ping
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	reg, err := name.NewRegistry(strings.TrimPrefix(srv.URL, "http://"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	key := SessionKey{Registry: reg.RegistryStr(), Insecure: true}
	now := time.Now()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if ch, err := p.Challenge(context.Background(), key, reg, http.DefaultTransport, now); err != nil || !strings.EqualFold(ch.Scheme, "basic") {
				t.Errorf("challenge %+v, error %v", ch, err)
			}
		})
	}
	wg.Wait()
	first := pings.Load()
	if _, err := p.Challenge(context.Background(), key, reg, http.DefaultTransport, now.Add(SessionTTL)); err != nil {
		t.Fatal(err)
	}
	if first < 1 || pings.Load() <= first {
		t.Errorf("pings: %d for five callers at once, %d after the TTL; want the first shared and one more after the TTL", first, pings.Load())
	}
	fail.Store(true)
	other := SessionKey{Registry: reg.RegistryStr(), Insecure: true, Auth: "someone else"}
	if _, err := p.Challenge(context.Background(), other, reg, http.DefaultTransport, now); err == nil {
		t.Fatal("a registry answering 503 gave a challenge")
	}
	fail.Store(false)
	if _, err := p.Challenge(context.Background(), other, reg, http.DefaultTransport, now); err != nil {
		t.Errorf("a failed ping was remembered: %v", err)
	}
}

func TestAliasesAreLowerCaseAndNilWithoutAny(t *testing.T) {
	t.Parallel()
	if got := Aliases(nil); got != nil {
		t.Errorf("Aliases(nil) = %v", got)
	}
	got := Aliases([]v1alpha1.HostAlias{{IP: "10.0.0.1", Hostnames: []v1alpha1.Hostname{"Nexus.Local", "nexus.lan"}}})
	if fmt.Sprint(got) != "map[nexus.lan:10.0.0.1 nexus.local:10.0.0.1]" {
		t.Errorf("Aliases = %v", got)
	}
}
