// Package registryhttp is how regwire talks HTTP to registries: transports shared per TLS
// setting (Pool.Transport), registry sessions shared between copies (Pool.Challenge), and
// the round trippers every request goes through — bounds on what a registry may make
// regwire do (Bounded), Retry-After (WithRetryAfter), request counting (Counting) and
// registries served under a path (WithPathPrefix). It knows nothing of images: the copy
// engine (internal/imagecopy) composes it.
package registryhttp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/cabundle"
)

// Pool holds what the copies of one process share: one transport per TLS setting (a
// hundred repositories on one registry need a handful of connections, not a pool each),
// and registry sessions.
//
// Registry sessions: go-containerregistry pings a registry (GET /v2/, and on a plain-HTTP
// registry first the https attempt) for every repository it talks to, to learn how to
// authenticate. A registry that wants no token (anonymous or basic auth) answers the same
// for all repositories, so the Pool remembers its challenge per registry, endpoint
// settings and credentials for SessionTTL: a hundred repositories on one registry cost one
// ping, not a hundred. Registries that hand out bearer tokens (scoped per repository) keep
// go-containerregistry's own handshake.
//
// The zero Pool is ready to use; it is safe for concurrent use.
type Pool struct {
	mu         sync.Mutex
	transports map[transportKey]splitTransport
	sessions   map[SessionKey]*session
}

type transportKey struct {
	ca       string
	insecure bool
	aliases  string
	guard    string
}

// Transport returns the HTTP transport for endpoints with these TLS settings, one per
// setting and Pool. It is a splitTransport: two connection pools with the same TLS
// settings and dialer. aliases resolve host names as AliasDialer does; guard, when set,
// refuses the addresses it guards.
func (p *Pool) Transport(ca []byte, insecure bool, aliases map[string]string, guard *DialGuard) (http.RoundTripper, error) {
	key := transportKey{ca: Hash(string(ca)), insecure: insecure, aliases: aliasKey(aliases), guard: guard.key()}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.transports[key]; ok {
		return t, nil
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	if len(ca) > 0 || insecure {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} // verification off only when asked
	}
	if len(ca) > 0 {
		bundle, err := cabundle.Parse(ca)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig.RootCAs = bundle.Pool()
	}
	if len(aliases) > 0 || guard != nil {
		t.DialContext = dialer(aliases, guard)
	}
	bulk := t.Clone()
	bulk.ForceAttemptHTTP2 = false
	bulk.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	// Clone set t up for HTTP/2 first, so the copy would still offer "h2" in ALPN.
	if bulk.TLSClientConfig != nil {
		bulk.TLSClientConfig.NextProtos = nil
	}
	split := splitTransport{small: t, bulk: bulk}
	if p.transports == nil {
		p.transports = map[transportKey]splitTransport{}
	}
	p.transports[key] = split
	return split, nil
}

// splitTransport sends the requests that carry blob contents (those under /blobs/ but
// HEADs: a layer's GET, its upload's POST, PATCH and PUT) over HTTP/1.1, and everything
// else over HTTP/2 where the registry offers it. A Go registry (distribution, Harbor,
// zot) reads every upload of an HTTP/2 connection through one 1 MiB flow-control window
// (net/http's MaxReceiveBufferPerConnection default), so layers pushed side by side share
// what one round trip can carry, where each HTTP/1.1 connection gets a TCP window of its
// own; and Go's HTTP/2 spends more CPU per byte than HTTP/1.1 on both ends
// (golang/go#47840). Manifests, HEADs and tag lists, small and many, keep HTTP/2's one
// connection per registry.
type splitTransport struct {
	small, bulk *http.Transport
}

func (t splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if carriesBlobContents(r) {
		return t.bulk.RoundTrip(r)
	}
	return t.small.RoundTrip(r)
}

// carriesBlobContents says whether r sends or fetches a blob's bytes.
func carriesBlobContents(r *http.Request) bool {
	return r.Method != http.MethodHead && strings.Contains(r.URL.Path, "/blobs/")
}

// aliasKey is a stable string of host aliases.
func aliasKey(aliases map[string]string) string {
	keys := slices.Sorted(maps.Keys(aliases))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + aliases[k] + ";")
	}
	return b.String()
}

// SessionTTL is how long a registry's challenge is trusted before it is asked again.
const SessionTTL = 10 * time.Minute

// SessionKey identifies a registry session: the registry, the path it serves its API
// under, and the endpoint's settings and credentials as hashes (Hash, AuthKey; never the
// secrets themselves).
type SessionKey struct {
	Registry, PathPrefix string
	Insecure             bool
	CA, Auth             string
}

type session struct {
	done      chan struct{}
	challenge *transport.Challenge
	err       error
	at        time.Time
}

// Challenge returns the registry's authentication challenge, pinging it through rt once
// per key and SessionTTL; concurrent callers wait for that one ping. A failed ping is not
// remembered.
func (p *Pool) Challenge(ctx context.Context, key SessionKey, reg name.Registry, rt http.RoundTripper, now time.Time) (*transport.Challenge, error) {
	p.mu.Lock()
	s, ok := p.sessions[key]
	if ok && s.expired(now) {
		ok = false
	}
	if !ok {
		s = &session{done: make(chan struct{}), at: now}
		if p.sessions == nil {
			p.sessions = map[SessionKey]*session{}
		}
		p.sessions[key] = s
	}
	p.mu.Unlock()
	if ok {
		<-s.done
		return s.challenge, s.err
	}
	s.challenge, s.err = transport.Ping(ctx, reg, rt)
	close(s.done)
	if s.err != nil {
		p.mu.Lock()
		if p.sessions[key] == s {
			delete(p.sessions, key)
		}
		p.mu.Unlock()
	}
	return s.challenge, s.err
}

// expired says whether a finished ping is older than the TTL (one under way is not).
func (s *session) expired(now time.Time) bool {
	select {
	case <-s.done:
		return now.Sub(s.at) >= SessionTTL
	default:
		return false
	}
}

// Hash is a short digest of parts, for keys that must not hold what they identify.
func Hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = io.WriteString(h, p)
		_, _ = h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// AuthKey identifies credentials without keeping them.
func AuthKey(auth authn.Authenticator) (string, error) {
	cfg, err := authn.Authorization(context.Background(), auth)
	if err != nil {
		return "", err
	}
	return Hash(cfg.Username, cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken), nil
}

// WithScheme sends requests for host over scheme (the one its ping answered on).
func WithScheme(scheme, host string, next http.RoundTripper) http.RoundTripper {
	return schemeTransport{scheme: scheme, host: host, next: next}
}

type schemeTransport struct {
	scheme, host string
	next         http.RoundTripper
}

func (t schemeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == t.host && r.URL.Scheme != t.scheme {
		r = r.Clone(r.Context())
		r.URL.Scheme = t.scheme
	}
	return t.next.RoundTrip(r)
}

// Retryable is go-containerregistry's retry predicate: network flakes and cut-short
// bodies.
func Retryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var te interface{ Temporary() bool }
	if errors.As(err, &te) && te.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// RetryStatusCodes are go-containerregistry's: the answers worth asking again.
var RetryStatusCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 499, 522}

// Aliases are a RegistryMirror's hostAliases as AliasDialer takes them: lower-case host
// name → IP address (nil when there are none).
func Aliases(hostAliases []v1alpha1.HostAlias) map[string]string {
	var aliases map[string]string
	for _, a := range hostAliases {
		for _, h := range a.Hostnames {
			if aliases == nil {
				aliases = map[string]string{}
			}
			aliases[strings.ToLower(string(h))] = a.IP
		}
	}
	return aliases
}

// AliasDialer dials as a net.Dialer does, except that host names in aliases (lower case)
// go to their IP address: the RegistryMirror's hostAliases, what nodes get in /etc/hosts,
// for names DNS does not resolve. TLS still verifies the name.
func AliasDialer(aliases map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialer(aliases, nil)
}

// dialer is AliasDialer with a guard on the addresses dialled.
func dialer(aliases map[string]string, guard *DialGuard) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if guard != nil {
		d.Control = guard.Control
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip, ok := aliases[strings.ToLower(host)]; ok {
				addr = net.JoinHostPort(ip, port)
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}
