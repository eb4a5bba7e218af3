package registryhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// Bounds on what a registry can make regwire do. Each is named in the error that hits it.
const (
	// DefaultStallTimeout is how long a request may make no progress — no connection, no
	// response headers, no byte of the body it sends or reads while regwire waits on the
	// registry — before it fails. A registry that is merely slow keeps moving bytes and is
	// never cut off; only silence is.
	DefaultStallTimeout = 2 * time.Minute
	// maxRedirects bounds a chain of redirects, as net/http's own default does (which
	// go-containerregistry's redirect check replaces).
	maxRedirects = 10
	// maxManifestBytes is the largest manifest read: the OCI distribution spec's 4 MiB,
	// which the CNCF distribution registry also enforces.
	maxManifestBytes = 4 << 20
	// maxTagListBytes bounds all pages of one tag listing together: about 400,000 tags of
	// 40 characters.
	maxTagListBytes = 16 << 20
	// maxTagPages bounds the pages of one tag listing.
	maxTagPages = 10_000
)

// StallError is a request that made no progress for the stall timeout.
type StallError struct {
	// Phase is what was awaited: "connect", "send" (the registry stopped reading the
	// request body), "headers" or "body" (the registry stopped sending).
	Phase string
	// URL of the request, without its query.
	URL string
	// After is the stall timeout.
	After time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("no progress for %s while waiting for the registry (%s) on %s; the registry stalled (bound: stall timeout)", e.After, e.Phase, e.URL)
}

// BoundError is an answer that exceeds one of regwire's bounds.
type BoundError struct {
	// Bound names the constant, e.g. "maxManifestBytes".
	Bound string
	// What says what exceeded it.
	What string
}

func (e *BoundError) Error() string { return fmt.Sprintf("%s (bound: %s)", e.What, e.Bound) }

// Bounded enforces the stall timeout (DefaultStallTimeout when stall is zero) and the
// bounds on every request: redirect chains, manifest sizes and digests, tag listings
// (within a context of WithListing). With followRedirects it follows the redirects of GET
// and HEAD requests itself, to any host: go-containerregistry then never sees them, and
// never applies its refusal of redirects to private addresses.
func Bounded(next http.RoundTripper, stall time.Duration, followRedirects bool) http.RoundTripper {
	return boundsTransport{next: next, stall: stall, followRedirects: followRedirects}
}

type boundsTransport struct {
	next            http.RoundTripper
	stall           time.Duration
	followRedirects bool
}

func (t boundsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(r)
	for err == nil && t.followRedirects && (r.Method == http.MethodGet || r.Method == http.MethodHead) && isRedirect(resp.StatusCode) {
		if resp.Header.Get("Location") == "" {
			return resp, nil // no Location: the caller sees the redirect as it is
		}
		loc, locErr := resp.Location()
		if locErr != nil {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("redirect from %s: %w", stripQuery(r), locErr)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		hop := r.Clone(r.Context())
		hop.URL, hop.Host, hop.Response = loc, "", resp
		if loc.Host != r.URL.Host {
			hop.Header.Del("Authorization") // as net/http does across hosts
		}
		r = hop
		resp, err = t.roundTrip(hop)
	}
	return resp, err
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

func (t boundsTransport) roundTrip(r *http.Request) (*http.Response, error) {
	if n := redirectDepth(r); n > maxRedirects {
		return nil, &BoundError{Bound: "maxRedirects", What: fmt.Sprintf("more than %d redirects, the last to %s", maxRedirects, stripQuery(r))}
	}
	if l := listingOf(r.Context()); l != nil && isTagList(r) {
		if err := l.page(r); err != nil {
			return nil, err
		}
	}
	var sent *hashingBody
	if r.Method == http.MethodPut && isManifest(r) && r.Body != nil && r.Body != http.NoBody {
		sent = &hashingBody{ReadCloser: r.Body, h: sha256.New()}
		r = r.Clone(r.Context())
		r.Body = sent
	}
	w := newWatchdog(r, t.stall)
	resp, err := t.next.RoundTrip(w.request)
	if err != nil {
		return nil, w.fail(err)
	}
	if sent != nil && resp.StatusCode == http.StatusCreated {
		got := "sha256:" + hex.EncodeToString(sent.h.Sum(nil))
		if stored := resp.Header.Get("Docker-Content-Digest"); strings.HasPrefix(stored, "sha256:") && stored != got {
			_ = resp.Body.Close()
			w.done()
			return nil, fmt.Errorf("manifest %s: sent content whose digest is %s, the registry stored %s", stripQuery(r), got, stored)
		}
	}
	w.phase("body")
	w.waitOnRegwire() // until regwire reads the body
	resp.Body = &watchedBody{ReadCloser: resp.Body, w: w}
	if r.Method == http.MethodGet && isManifest(r) && resp.StatusCode == http.StatusOK {
		return checkManifest(r, resp)
	}
	if l := listingOf(r.Context()); l != nil && isTagList(r) && resp.StatusCode == http.StatusOK {
		resp.Body = &limitedBody{ReadCloser: resp.Body, left: &l.left, err: &BoundError{Bound: "maxTagListBytes",
			What: fmt.Sprintf("the tag listing of %s is larger than %d MiB", stripQuery(r), maxTagListBytes>>20)}, mu: &l.mu}
	}
	return resp, nil
}

// redirectDepth counts the redirects that led to r.
func redirectDepth(r *http.Request) int {
	n := 0
	for resp := r.Response; resp != nil && resp.Request != nil; resp = resp.Request.Response {
		n++
	}
	return n
}

func isManifest(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }
func isTagList(r *http.Request) bool  { return strings.HasSuffix(r.URL.Path, "/tags/list") }

func stripQuery(r *http.Request) string {
	u := *r.URL
	u.RawQuery, u.User = "", nil
	return u.String()
}

// checkManifest reads a manifest within maxManifestBytes and checks it against the digest
// the registry advertises for it: a registry whose bytes differ from its
// Docker-Content-Digest would otherwise be copied under a digest that is not the content's.
func checkManifest(r *http.Request, resp *http.Response) (*http.Response, error) {
	defer resp.Body.Close()
	if resp.ContentLength > maxManifestBytes {
		return nil, &BoundError{Bound: "maxManifestBytes", What: fmt.Sprintf("manifest %s is %d bytes, more than the OCI distribution spec's %d MiB", stripQuery(r), resp.ContentLength, maxManifestBytes>>20)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxManifestBytes {
		return nil, &BoundError{Bound: "maxManifestBytes", What: fmt.Sprintf("manifest %s is larger than the OCI distribution spec's %d MiB", stripQuery(r), maxManifestBytes>>20)}
	}
	sum := sha256.Sum256(body)
	got := "sha256:" + hex.EncodeToString(sum[:])
	if want := resp.Header.Get("Docker-Content-Digest"); strings.HasPrefix(want, "sha256:") && want != got {
		return nil, fmt.Errorf("manifest %s: the registry says its digest is %s, but its content's is %s", stripQuery(r), want, got)
	}
	if i := strings.LastIndex(r.URL.Path, "/manifests/"); i >= 0 {
		if ref := r.URL.Path[i+len("/manifests/"):]; strings.HasPrefix(ref, "sha256:") && ref != got {
			return nil, fmt.Errorf("manifest %s: asked for %s, got content whose digest is %s", stripQuery(r), ref, got)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// hashingBody hashes a request body as it is sent.
type hashingBody struct {
	io.ReadCloser
	h hash.Hash
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.h.Write(p[:n])
	return n, err
}

// listingKey carries a *listing in the context of one tag listing.
type listingKey struct{}

// listing is the budget of one tag listing across its pages.
type listing struct {
	mu    sync.Mutex
	pages int
	seen  map[string]bool
	left  int64
}

// WithListing returns a context for the requests of one tag listing: its pages share one
// budget (maxTagListBytes, maxTagPages) and none may be asked for twice.
func WithListing(ctx context.Context) context.Context {
	return context.WithValue(ctx, listingKey{}, &listing{seen: map[string]bool{}, left: maxTagListBytes})
}

func listingOf(ctx context.Context) *listing {
	l, _ := ctx.Value(listingKey{}).(*listing)
	return l
}

// page counts a page of the listing, refusing a page asked for twice (a Link header that
// loops) and more than maxTagPages.
func (l *listing) page(r *http.Request) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := r.URL.String()
	if l.seen[u] {
		return &BoundError{Bound: "tag pages seen once", What: fmt.Sprintf("the tag listing loops: %s was asked for twice", u)}
	}
	l.seen[u] = true
	if l.pages++; l.pages > maxTagPages {
		return &BoundError{Bound: "maxTagPages", What: fmt.Sprintf("the tag listing has more than %d pages", maxTagPages)}
	}
	return nil
}

// limitedBody fails once more than left bytes (shared by the pages of one listing) are read.
type limitedBody struct {
	io.ReadCloser
	mu   *sync.Mutex
	left *int64
	err  error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	*b.left -= int64(n)
	over := *b.left < 0
	b.mu.Unlock()
	if over {
		return n, b.err
	}
	return n, err
}

// watchdog cancels a request that makes no progress for stall while regwire waits on the
// registry. Time spent waiting on regwire itself — its own reads of a request body it
// streams from elsewhere, or a response body nobody is reading yet — does not count.
type watchdog struct {
	request *http.Request
	stall   time.Duration
	cancel  context.CancelCauseFunc
	stop    func() bool

	mu        sync.Mutex
	current   string    // what is awaited, see StallError.Phase
	since     time.Time // when the current wait began, or progress was last seen
	onRegwire bool      // regwire, not the registry, is being waited on
	finished  bool
	url       string
}

func newWatchdog(r *http.Request, stall time.Duration) *watchdog {
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	w := &watchdog{stall: stall, cancel: cancel, current: "connect", since: time.Now(), url: stripQuery(r)}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:              func(httptrace.GotConnInfo) { w.phase("send") },
		WroteRequest:         func(httptrace.WroteRequestInfo) { w.phase("headers") },
		GotFirstResponseByte: func() { w.progress() },
	})
	w.request = r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		w.request.Body = &watchedRequestBody{ReadCloser: r.Body, w: w}
	}
	t := time.AfterFunc(stall, w.check)
	w.stop = t.Stop
	return w
}

// check fires when the current wait may have lasted stall; it cancels the request, or
// looks again when the wait is younger.
func (w *watchdog) check() {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return
	}
	left := w.stall - time.Since(w.since)
	if w.onRegwire || left > 0 {
		w.mu.Unlock()
		time.AfterFunc(max(left, w.stall/4), w.check)
		return
	}
	err := &StallError{Phase: w.current, URL: w.url, After: w.stall}
	w.finished = true
	w.mu.Unlock()
	w.cancel(err)
}

func (w *watchdog) phase(p string) {
	w.mu.Lock()
	w.current, w.since = p, time.Now()
	w.mu.Unlock()
}

func (w *watchdog) progress() {
	w.mu.Lock()
	w.since = time.Now()
	w.mu.Unlock()
}

// waitOnRegwire marks that regwire, not the registry, is being waited on: such time is
// not a stall.
func (w *watchdog) waitOnRegwire() { w.waitOn(true) }

// waitOnRegistry marks that the registry is being waited on again.
func (w *watchdog) waitOnRegistry() { w.waitOn(false) }

func (w *watchdog) waitOn(regwire bool) {
	w.mu.Lock()
	w.onRegwire, w.since = regwire, time.Now()
	w.mu.Unlock()
}

// done stops the watchdog.
func (w *watchdog) done() {
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	w.stop()
	w.cancel(nil)
}

// fail turns an error of a cancelled request into its StallError.
func (w *watchdog) fail(err error) error {
	cause := context.Cause(w.request.Context())
	w.done()
	var se *StallError
	if errors.As(cause, &se) {
		return se
	}
	return err
}

// watchedBody is a response body: the registry's turn while regwire reads it.
type watchedBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.w.waitOnRegistry()
	n, err := b.ReadCloser.Read(p)
	b.w.waitOnRegwire()
	if err != nil && !errors.Is(err, io.EOF) {
		return n, b.w.fail(err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.done()
	return b.ReadCloser.Close()
}

// watchedRequestBody is a request body: regwire's turn while the transport reads it (it may
// come from the other registry), the registry's while the transport sends it.
type watchedRequestBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *watchedRequestBody) Read(p []byte) (int, error) {
	b.w.waitOnRegwire()
	n, err := b.ReadCloser.Read(p)
	b.w.waitOnRegistry()
	return n, err
}
