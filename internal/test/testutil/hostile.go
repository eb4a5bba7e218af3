package testutil

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// Hostile is a registry that misbehaves: it answers the requests its intercept takes
// itself and hands everything else to a real registry. Requests it holds end with the test.
type Hostile struct {
	*httptest.Server
	// Requests counts every request it received.
	Requests atomic.Int64
	// Stalled receives a value each time Stall starts holding a request.
	Stalled chan struct{}
	done    chan struct{}
	proxy   http.Handler
}

// StartHostile starts a Hostile in front of upstream.
func StartHostile(t testing.TB, upstream *Registry, intercept func(h *Hostile, w http.ResponseWriter, r *http.Request) bool) *Hostile {
	t.Helper()
	u, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	h := &Hostile{done: make(chan struct{}), Stalled: make(chan struct{}, 64), proxy: proxy}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Requests.Add(1)
		if !intercept(h, w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(h.Close)
	t.Cleanup(func() { close(h.done) }) // runs first: held requests return
	return h
}

// Host is host:port, as image references name it.
func (h *Hostile) Host() string { return strings.TrimPrefix(h.URL, "http://") }

// Hang holds the request until the test or the request ends.
func (h *Hostile) Hang(r *http.Request) {
	select {
	case <-h.done:
	case <-r.Context().Done():
	}
}

// Stall answers with the headers of a size-byte body and its first 64 KiB, then holds the
// request: a registry that stops sending halfway.
func (h *Hostile) Stall(w http.ResponseWriter, r *http.Request, size int64) {
	w.Header().Set("Content-Length", fmt.Sprint(size))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(make([]byte, min(size, 64<<10)))
	w.(http.Flusher).Flush()
	select {
	case h.Stalled <- struct{}{}:
	default:
	}
	h.Hang(r)
}

// IsBlobGet says whether r is a GET of blob digest.
func IsBlobGet(r *http.Request, digest string) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+digest)
}

// Rewrite answers with the real registry's answer to r after edit has changed its headers
// and body: a registry (or a proxy) that lies.
func (h *Hostile) Rewrite(w http.ResponseWriter, r *http.Request, edit func(header http.Header, body []byte) []byte) {
	rec := httptest.NewRecorder()
	h.proxy.ServeHTTP(rec, r)
	body := edit(rec.Header(), rec.Body.Bytes())
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// Forward hands r to the real registry, writing its answer to w (a SlowWriter, say).
func (h *Hostile) Forward(w http.ResponseWriter, r *http.Request) { h.proxy.ServeHTTP(w, r) }
