package imagesync

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
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regwire/regwire/internal/cabundle"
)

// Registry sessions. go-containerregistry pings a registry (GET /v2/, and on a plain-HTTP
// registry first the https attempt) for every repository it talks to, to learn how to
// authenticate. A registry that wants no token (anonymous or basic auth) answers the same
// for all repositories, so the Cache remembers its challenge per registry, endpoint
// settings and credentials for sessionTTL, and the Engines of a process share it: a
// hundred repositories on one registry cost one ping, not a hundred. Registries that hand
// out bearer tokens (scoped per repository) keep go-containerregistry's own handshake.

// transport returns the HTTP transport for endpoints with these TLS settings, one per
// setting and Cache: Engines that share a Cache share its connections (a hundred
// repositories on one registry need a handful of connections, not a pool each). It is a
// splitTransport: two pools with the same TLS settings and dialer.
func (b *Cache) transport(ca []byte, insecure bool, aliases map[string]string) (http.RoundTripper, error) {
	key := transportKey{ca: hashOf(string(ca)), insecure: insecure, aliases: aliasKey(aliases)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.transports[key]; ok {
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
	if len(aliases) > 0 {
		t.DialContext = AliasDialer(aliases)
	}
	bulk := t.Clone()
	bulk.ForceAttemptHTTP2 = false
	bulk.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	// Clone set t up for HTTP/2 first, so the copy would still offer "h2" in ALPN.
	if bulk.TLSClientConfig != nil {
		bulk.TLSClientConfig.NextProtos = nil
	}
	split := splitTransport{small: t, bulk: bulk}
	if b.transports == nil {
		b.transports = map[transportKey]splitTransport{}
	}
	b.transports[key] = split
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
	if r.Method != http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
		return t.bulk.RoundTrip(r)
	}
	return t.small.RoundTrip(r)
}

type transportKey struct {
	ca       string
	insecure bool
	aliases  string
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

// sessionTTL is how long a registry's challenge is trusted before it is asked again.
const sessionTTL = 10 * time.Minute

type sessionKey struct {
	registry, prefix string
	insecure         bool
	// ca and auth are hashes of the CA bundle and the credentials (never the secrets).
	ca, auth string
}

type session struct {
	done      chan struct{}
	challenge *transport.Challenge
	err       error
	at        time.Time
}

// challenge returns the registry's authentication challenge, pinging it once per key and
// TTL; concurrent callers wait for that one ping. A failed ping is not remembered.
func (b *Cache) challenge(ctx context.Context, key sessionKey, reg name.Registry, rt http.RoundTripper, now time.Time) (*transport.Challenge, error) {
	b.mu.Lock()
	s, ok := b.sessions[key]
	if ok && s.expired(now) {
		ok = false
	}
	if !ok {
		s = &session{done: make(chan struct{}), at: now}
		if b.sessions == nil {
			b.sessions = map[sessionKey]*session{}
		}
		b.sessions[key] = s
	}
	b.mu.Unlock()
	if ok {
		<-s.done
		return s.challenge, s.err
	}
	s.challenge, s.err = transport.Ping(ctx, reg, rt)
	close(s.done)
	if s.err != nil {
		b.mu.Lock()
		if b.sessions[key] == s {
			delete(b.sessions, key)
		}
		b.mu.Unlock()
	}
	return s.challenge, s.err
}

// expired says whether a finished ping is older than the TTL (one under way is not).
func (s *session) expired(now time.Time) bool {
	select {
	case <-s.done:
		return now.Sub(s.at) >= sessionTTL
	default:
		return false
	}
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = io.WriteString(h, p)
		_, _ = h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// authKey identifies credentials without keeping them.
func authKey(auth authn.Authenticator) (string, error) {
	cfg, err := authn.Authorization(context.Background(), auth)
	if err != nil {
		return "", err
	}
	return hashOf(cfg.Username, cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken), nil
}

// schemeTransport sends requests for the registry over the scheme its ping answered on.
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

// retryPredicate is go-containerregistry's: network flakes and cut-short bodies.
func retryPredicate(err error) bool {
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

// retryStatusCodes are go-containerregistry's.
var retryStatusCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 499, 522}

// connect makes the side's remote options: through a shared session when the registry
// wants no token, else through go-containerregistry's handshake for this repository.
func (s *side) connect(ctx context.Context, cache *Cache) error {
	s.once.Do(func() {
		s.err = s.dial(ctx, cache)
	})
	return s.err
}

func (s *side) dial(ctx context.Context, cache *Cache) error {
	auth := s.endpoint.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	// The transport: go-containerregistry's handshake on the base transport, unless the
	// shared session says no token is needed.
	rt := s.base
	if s.shareable {
		ak, err := authKey(auth)
		if err != nil {
			return err
		}
		reg := s.repo.Registry
		key := sessionKey{registry: reg.RegistryStr(), prefix: s.endpoint.PathPrefix, insecure: s.endpoint.Insecure, ca: hashOf(string(s.endpoint.CA)), auth: ak}
		// Retried like every other request (go-containerregistry retries its own pings too).
		retrying := transport.NewRetry(s.base, transport.WithRetryBackoff(s.backoff), transport.WithRetryPredicate(retryPredicate), transport.WithRetryStatusCodes(retryStatusCodes...))
		ch, err := cache.challenge(ctx, key, reg, retrying, time.Now())
		if err != nil {
			return err
		}
		if !strings.EqualFold(ch.Scheme, "bearer") {
			scheme := "https"
			if ch.Insecure {
				scheme = "http"
			}
			// A *transport.Wrapper: go-containerregistry uses it as it is, without a ping.
			w, err := transport.FromToken(reg, auth, schemeTransport{scheme: scheme, host: reg.RegistryStr(), next: retrying}, ch, &transport.Token{})
			if err != nil {
				return err
			}
			rt = w
		}
	}
	// The backoff also drives remote's own retries of whole uploads.
	opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(rt), remote.WithRetryBackoff(s.backoff)}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return err
	}
	opts = append(opts, remote.Reuse(p))
	s.puller, s.opts = p, opts
	return nil
}

// AliasDialer dials as a net.Dialer does, except that host names in aliases (lower case)
// go to their IP address: the RegistryMirror's hostAliases, what nodes get in /etc/hosts,
// for names DNS does not resolve. TLS still verifies the name.
func AliasDialer(aliases map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip, ok := aliases[strings.ToLower(host)]; ok {
				addr = net.JoinHostPort(ip, port)
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}
