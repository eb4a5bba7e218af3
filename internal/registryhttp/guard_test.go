package registryhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestTheDialGuardRefusesLoopbackLinkLocalAndUnspecifiedAddresses(t *testing.T) {
	t.Parallel()
	guard := &DialGuard{Flag: "--allow-source-cidrs"}
	allowing := &DialGuard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Flag: "--allow-source-cidrs"}
	tests := []struct {
		name    string
		guard   *DialGuard
		address string
		kind    string // "" when allowed
	}{
		{name: "IPv4 loopback is refused", guard: guard, address: "127.0.0.1:5000", kind: "loopback"},
		{name: "all of 127/8 is loopback", guard: guard, address: "127.3.2.1:80", kind: "loopback"},
		{name: "IPv6 loopback is refused", guard: guard, address: "[::1]:5000", kind: "loopback"},
		{name: "IPv4 loopback written as IPv6 is refused", guard: guard, address: "[::ffff:127.0.0.1]:5000", kind: "loopback"},
		{name: "the cloud metadata service is refused", guard: guard, address: "169.254.169.254:80", kind: "link-local"},
		{name: "IPv6 link-local is refused", guard: guard, address: "[fe80::1]:80", kind: "link-local"},
		{name: "AWS's IPv6 metadata address is refused", guard: guard, address: "[fd00:ec2::254]:80", kind: "link-local"},
		{name: "the unspecified address is refused", guard: guard, address: "0.0.0.0:5000", kind: "unspecified"},
		{name: "a private network address is where registries live", guard: guard, address: "10.1.2.3:443"},
		{name: "a public address is allowed", guard: guard, address: "203.0.113.7:443"},
		{name: "an allowed CIDR lets its address through", guard: allowing, address: "127.0.0.1:5000"},
		{name: "an allowed CIDR lets only its addresses through", guard: allowing, address: "127.0.0.2:5000", kind: "loopback"},
		{name: "no guard refuses nothing", guard: nil, address: "127.0.0.1:5000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.guard.Control("tcp", tc.address, nil)
			var refused *DialRefusedError
			switch {
			case tc.kind == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.kind != "" && (!errors.As(err, &refused) || refused.Kind != tc.kind || refused.Flag != "--allow-source-cidrs"):
				t.Fatalf("got %v, want a refused %s address naming the flag", err, tc.kind)
			}
		})
	}
}

// TestAGuardedTransportNeverConnects: through a guarded transport, a request to a
// loopback listener fails with the guard's error and the listener sees no connection; the
// same request through a transport that allows the address connects.
func TestAGuardedTransportNeverConnects(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("127.0.0.2 is not usable here: %v", err)
	}
	var accepted atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		}}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + l.Addr().String() + "/v2/"

	var p Pool
	guarded, err := p.Transport(nil, false, nil, &DialGuard{Flag: "--allow-source-cidrs"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	var refused *DialRefusedError
	resp, err := guarded.RoundTrip(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	if !errors.As(err, &refused) {
		t.Fatalf("a guarded request to %s: %v, want refused", url, err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the loopback listener accepted %d connections from a guarded transport", n)
	}
	open, err := p.Transport(nil, false, nil, &DialGuard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = open.RoundTrip(req.Clone(context.Background()))
	if err != nil {
		t.Fatalf("with 127.0.0.0/8 allowed: %v", err)
	}
	_ = resp.Body.Close()
	if accepted.Load() == 0 {
		t.Fatal("the allowed request never connected: the test proves nothing")
	}
}
