package registryhttp

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimits remembers, per registry, the pull limit a registry publishes in its answers
// (Docker Hub: "RateLimit-Limit: 100;w=21600" and "RateLimit-Remaining: 76;w=21600" on
// manifest answers, HEAD included; a manifest GET is a pull, a HEAD is not, blobs are
// not), so that copies stop before they spend the last pulls a cluster's nodes need.
// Share one per process: the limit is the client's, not a copy's.
type RateLimits struct {
	mu sync.Mutex
	m  map[string]rateState
	// Observe, when set, is told every limit seen (metrics).
	Observe func(registry string, remaining, limit int)
}

type rateState struct {
	remaining, limit int
	window           time.Duration
	at               time.Time
}

// RateLimitError is a manifest read regwire did not send: the registry's published pulls
// left are at or below the floor.
type RateLimitError struct {
	Registry         string
	Remaining, Limit int
	Floor            int
	Window           time.Duration
	// Until is when the observation that stopped it lapses (seen + window) unless a newer
	// answer (a HEAD, which is free) says more pulls are left.
	Until time.Time
}

func (e *RateLimitError) Error() string {
	limit := ""
	if e.Limit > 0 {
		limit = fmt.Sprintf(" of %d", e.Limit)
	}
	return fmt.Sprintf("%s's pull limit: %d%s pulls left in its %s window (RateLimit-Remaining), at or below the floor of %d: no manifest is read from it until its answers show more left (manifest HEADs, which do not count, keep checking), at the latest %s",
		e.Registry, e.Remaining, limit, e.Window, e.Floor, e.Until.UTC().Format(time.RFC3339))
}

// parseLimit reads "76;w=21600" (the IETF RateLimit header fields draft, as Docker Hub
// sends them): the count and the window.
func parseLimit(v string) (n int, window time.Duration, ok bool) {
	if v == "" {
		return 0, 0, false
	}
	parts := strings.Split(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || n < 0 {
		return 0, 0, false
	}
	for _, p := range parts[1:] {
		if k, val, found := strings.Cut(strings.TrimSpace(p), "="); found && k == "w" {
			if s, err := strconv.Atoi(val); err == nil && s > 0 {
				window = time.Duration(s) * time.Second
			}
		}
	}
	return n, window, true
}

// Wrap observes the limits in registry's answers and, with floor > 0, refuses manifest
// GETs (pulls) while the last answer left floor pulls or fewer.
func (l *RateLimits) Wrap(registry string, floor int, next http.RoundTripper) http.RoundTripper {
	return rateLimitTransport{limits: l, registry: registry, floor: floor, next: next}
}

type rateLimitTransport struct {
	limits   *RateLimits
	registry string
	floor    int
	next     http.RoundTripper
}

func (t rateLimitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.floor > 0 && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
		if err := t.limits.check(t.registry, t.floor, time.Now()); err != nil {
			return nil, err
		}
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		t.limits.observe(t.registry, resp.Header, time.Now())
	}
	return resp, err
}

func (l *RateLimits) check(registry string, floor int, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.m[registry]
	if !ok || s.remaining > floor {
		return nil
	}
	window := s.window
	if window <= 0 {
		window = time.Hour
	}
	until := s.at.Add(window)
	if !now.Before(until) {
		return nil // what it said has lapsed
	}
	return &RateLimitError{Registry: registry, Remaining: s.remaining, Limit: s.limit, Floor: floor, Window: window, Until: until}
}

func (l *RateLimits) observe(registry string, h http.Header, now time.Time) {
	remaining, window, ok := parseLimit(h.Get("RateLimit-Remaining"))
	if !ok {
		return
	}
	limit, _, _ := parseLimit(h.Get("RateLimit-Limit"))
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]rateState{}
	}
	l.m[registry] = rateState{remaining: remaining, limit: limit, window: window, at: now}
	observe := l.Observe
	l.mu.Unlock()
	if observe != nil {
		observe(registry, remaining, limit)
	}
}
