package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// trace prints every request (BENCH_TRACE=1).
var trace = os.Getenv("BENCH_TRACE") != ""

// counts are the requests a proxy saw, by method, and the body bytes in each direction.
type counts struct {
	ByMethod      map[string]int64
	Up, Down      int64 // request bodies (to the registry) and response bodies
	Requests      int64
	ManifestHeads int64
	// What the requests were: authentication pings (GET /v2/), tag listings, manifest
	// reads, and the TCP connections they came over.
	Pings, Lists, ManifestGets, Conns int64
}

// countingProxy forwards to a registry and counts what passes; point peers at its address
// and retarget it when the registry restarts. It serves HTTPS with the registries'
// certificate (HTTP/2 offered, as the registries do), so peers see what they see there.
type countingProxy struct {
	srv                       *http.Server
	addr                      string
	mu                        sync.Mutex
	tls                       *loopbackTLS
	target                    *url.URL
	proxy                     *httputil.ReverseProxy
	byMethod                  sync.Map // string → *atomic.Int64
	up, down                  atomic.Int64
	heads                     atomic.Int64
	pings, lists, gets, conns atomic.Int64
}

func newCountingProxy(target string, t *loopbackTLS) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: l.Addr().String(), tls: t}
	p.retarget(target)
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 0, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}}
	go func() { _ = p.srv.ServeTLS(l, t.cert, t.key) }()
	return p, nil
}

func (p *countingProxy) retarget(target string) {
	u := &url.URL{Scheme: "https", Host: target}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = p.tls.transport()
	rp.ErrorLog = nil
	p.mu.Lock()
	p.target, p.proxy = u, rp
	p.mu.Unlock()
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (p *countingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if trace {
		fmt.Fprintln(os.Stderr, "TRACE", time.Now().Format("05.000000"), p.addr, r.Method, r.URL.Path)
	}
	v, _ := p.byMethod.LoadOrStore(r.Method, &atomic.Int64{})
	v.(*atomic.Int64).Add(1)
	switch {
	case r.Method == http.MethodHead && isManifestPath(r.URL.Path):
		p.heads.Add(1)
	case r.Method == http.MethodGet && isManifestPath(r.URL.Path):
		p.gets.Add(1)
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		p.pings.Add(1)
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		p.lists.Add(1)
	}
	if r.Body != nil {
		r.Body = countingReader{r.Body, &p.up}
	}
	p.mu.Lock()
	rp := p.proxy
	p.mu.Unlock()
	rp.ServeHTTP(countingWriter{w, &p.down}, r)
}

func isManifestPath(path string) bool {
	for i := len(path) - 1; i > 0; i-- {
		if path[i] == '/' {
			return i >= len("/manifests") && path[i-len("/manifests"):i] == "/manifests"
		}
	}
	return false
}

// take returns the counts since the last take and starts again from zero.
func (p *countingProxy) take() counts {
	c := counts{ByMethod: map[string]int64{}}
	p.byMethod.Range(func(k, v any) bool {
		n := v.(*atomic.Int64).Swap(0)
		if n > 0 {
			c.ByMethod[k.(string)] = n
			c.Requests += n
		}
		return true
	})
	c.Up, c.Down, c.ManifestHeads = p.up.Swap(0), p.down.Swap(0), p.heads.Swap(0)
	c.Pings, c.Lists, c.ManifestGets, c.Conns = p.pings.Swap(0), p.lists.Swap(0), p.gets.Swap(0), p.conns.Swap(0)
	return c
}

func (p *countingProxy) close() { _ = p.srv.Close() }
