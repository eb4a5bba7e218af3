package registryhttp

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// MaxRetryAfter bounds how long a registry's Retry-After can hold one request.
const MaxRetryAfter = 30 * time.Second

// WithRetryAfter waits as long as a registry's Retry-After asks (at most MaxRetryAfter)
// before handing back a 429 or 503, so that the caller's retry comes after the registry
// is ready again.
func WithRetryAfter(next http.RoundTripper) http.RoundTripper { return retryAfterTransport{next: next} }

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
	timer := time.NewTimer(min(wait, MaxRetryAfter))
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

// uploadKey carries the func that adds up the upload bytes of the requests made with a
// context (CountUploads).
type uploadKey struct{}

// CountUploads returns a context whose requests through Counting report the bytes of
// their upload bodies (POST, PATCH, PUT) to add as they are sent.
func CountUploads(ctx context.Context, add func(n int64)) context.Context {
	return context.WithValue(ctx, uploadKey{}, add)
}

// Requests counts the HTTP requests sent to one registry.
type Requests struct {
	// All requests, pings and token requests included.
	All atomic.Int64
	// ManifestHeads are the checks of tags and manifests.
	ManifestHeads atomic.Int64
	// referrersAPI records how the registry answered the OCI referrers API.
	referrersAPI atomic.Int32
}

// ReferrersAPI is how a registry answered the OCI referrers API.
type ReferrersAPI int32

const (
	// ReferrersNotAsked means no request to the referrers API has been answered yet.
	ReferrersNotAsked ReferrersAPI = iota
	// ReferrersServed means the registry answered 200.
	ReferrersServed
	// ReferrersMissing means the registry answered that it has no such API (404, 405, 501,
	// 400).
	ReferrersMissing
)

// ReferrersAPI says how the registry last answered the OCI referrers API.
func (r *Requests) ReferrersAPI() ReferrersAPI { return ReferrersAPI(r.referrersAPI.Load()) }

// Counting counts the requests sent through it into requests, learns how the registry
// answers the referrers API, and reports upload bytes to the func of CountUploads.
func Counting(next http.RoundTripper, requests *Requests) http.RoundTripper {
	return countingTransport{next: next, requests: requests}
}

type countingTransport struct {
	next     http.RoundTripper
	requests *Requests
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.requests.All.Add(1)
	if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
		t.requests.ManifestHeads.Add(1)
	}
	add, ok := r.Context().Value(uploadKey{}).(func(int64))
	if ok && r.Body != nil && r.Body != http.NoBody && (r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodPost) {
		r = r.Clone(r.Context())
		r.Body = &countingBody{ReadCloser: r.Body, add: add}
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/referrers/") {
		switch resp.StatusCode {
		case http.StatusOK:
			t.requests.referrersAPI.Store(int32(ReferrersServed))
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusBadRequest:
			t.requests.referrersAPI.Store(int32(ReferrersMissing))
		}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	add func(int64)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.add(int64(n))
	}
	return n, err
}

// WithPathPrefix serves the registry API of host from a path other than /v2 (a Nexus
// repository at /repository/my-docker/v2, containerd's override_path): requests for
// /v2/<rest> on host go to <prefix>/<rest>. Locations the registry hands back already
// carry the prefix and pass unchanged.
func WithPathPrefix(host, prefix string, next http.RoundTripper) http.RoundTripper {
	return prefixTransport{host: host, prefix: prefix, next: next}
}

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
