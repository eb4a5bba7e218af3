package imagesync

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// retryAfterTransport waits as long as a registry's Retry-After asks (at most
// maxRetryAfter) before handing back a 429 or 503, so that go-containerregistry's retry
// comes after the registry is ready again.
type retryAfterTransport struct{ next http.RoundTripper }

func (t retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return resp, err
	}
	wait := retryAfter(resp.Header.Get("Retry-After"), time.Now())
	if wait <= 0 {
		return resp, nil
	}
	timer := time.NewTimer(min(wait, maxRetryAfter))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
	}
	return resp, nil
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

// sentKey carries a *byteCounter in a request context.
type sentKey struct{}

// byteCounter adds up request body bytes of one tag's uploads.
type byteCounter struct {
	add func(n int64)
}

// Requests counts the HTTP requests sent to one registry.
type Requests struct {
	// All requests, pings and token requests included.
	All atomic.Int64
	// ManifestHeads are the checks of tags and manifests.
	ManifestHeads atomic.Int64
}

// countingTransport counts requests, and the bytes of upload bodies for the tag in the
// request context.
type countingTransport struct {
	next     http.RoundTripper
	requests *Requests
	// referrersAPI records how the registry answered the OCI referrers API: 0 not asked,
	// referrersServed, referrersMissing.
	referrersAPI *atomic.Int32
}

const (
	referrersServed  = 1
	referrersMissing = 2
)

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.requests.All.Add(1)
	if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
		t.requests.ManifestHeads.Add(1)
	}
	c, ok := r.Context().Value(sentKey{}).(*byteCounter)
	if ok && r.Body != nil && r.Body != http.NoBody && (r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodPost) {
		r = r.Clone(r.Context())
		r.Body = &countingBody{ReadCloser: r.Body, c: c}
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/referrers/") {
		switch resp.StatusCode {
		case http.StatusOK:
			t.referrersAPI.Store(referrersServed)
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusBadRequest:
			t.referrersAPI.Store(referrersMissing)
		}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	c *byteCounter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.add(int64(n))
	}
	return n, err
}

// prefixTransport serves the registry API from a path other than /v2 (a Nexus repository
// at /repository/my-docker/v2, containerd's override_path): requests for /v2/<rest> on the
// registry's host go to <prefix>/<rest>. Locations the registry hands back already carry
// the prefix and pass unchanged.
type prefixTransport struct {
	host, prefix string
	next         http.RoundTripper
}

func (t prefixTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	p := r.URL.Path
	if r.URL.Host == t.host && (p == "/v2" || strings.HasPrefix(p, "/v2/")) && !strings.HasPrefix(p, t.prefix+"/") {
		r = r.Clone(r.Context())
		r.URL.Path = t.prefix + strings.TrimPrefix(p, "/v2")
		r.URL.RawPath = ""
	}
	return t.next.RoundTrip(r)
}
