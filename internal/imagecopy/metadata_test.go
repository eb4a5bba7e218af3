package imagecopy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestCloudMetadataAddressesAreNeverDialled: in a network namespace of its own, the cloud
// metadata services' addresses 169.254.169.254 (link-local) and fd00:ec2::254 listen on lo,
// and metadata.internal resolves to the first through the system resolver (a private
// /etc/hosts). A source at each address, one named metadata.internal, and a source whose
// token realm is metadata.internal are all refused by the manager's guard, naming the
// address and the flag, and the listeners accept 0 connections; unguarded, the same copy
// reaches them (so the listeners could have counted).
func TestCloudMetadataAddressesAreNeverDialled(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n169.254.169.254 metadata.internal\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !testutil.InOwnNetwork(t, "ip addr add 169.254.169.254/32 dev lo; ip -6 addr add fd00:ec2::254/128 dev lo nodad; mount --bind "+hosts+" /etc/hosts") {
		return
	}
	var accepted atomic.Int64
	listen := func(addr string) string {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listening on %s: %v", addr, err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					_, _ = w.Write([]byte("{}"))
					return
				}
				http.NotFound(w, r)
			}),
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					accepted.Add(1)
				}
			}}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		return l.Addr().String()
	}
	v4 := listen("169.254.169.254:0")
	v6 := listen("[fd00:ec2::254]:0")
	_, port, _ := net.SplitHostPort(v4)
	// A source on 127.0.0.1 (allowed) whose token realm names metadata.internal.
	realmSource := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://metadata.internal:%s/token",service="registry"`, port))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(realmSource.Close)

	guard := &registryhttp.DialGuard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Flag: "--allow-source-cidrs"}
	sel, err := tagselect.New(tagselect.Spec{Pattern: ".*"}) // listing tags asks the source
	if err != nil {
		t.Fatal(err)
	}
	list := func(source string, g *registryhttp.DialGuard) error {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: source + "/library/app", Insecure: true},
			imagecopy.Endpoint{Repository: "127.0.0.1:1/mirror/app"}, imagecopy.Options{Bounds: imagecopy.Bounds{SourceGuard: g}})
		if err != nil {
			return err
		}
		_, err = eng.Tags(context.Background(), sel)
		return err
	}
	for _, tc := range []struct{ name, source, refused string }{
		{"a link-local source", v4, "169.254.169.254"},
		{"an IPv6 metadata source", v6, "fd00:ec2::254"},
		{"a name that resolves to a link-local address", "metadata.internal:" + port, "169.254.169.254"},
		{"a token realm that resolves to a link-local address", strings.TrimPrefix(realmSource.URL, "http://"), "169.254.169.254"},
	} {
		start := time.Now()
		err := list(tc.source, guard)
		t.Logf("%s: refused in %s", tc.name, time.Since(start).Round(time.Millisecond))
		var refused *registryhttp.DialRefusedError
		if !errors.As(err, &refused) || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), "--allow-source-cidrs") {
			t.Errorf("%s: %v, want the connection to %s refused, naming --allow-source-cidrs", tc.name, err, tc.refused)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the metadata listeners accepted %d connections from guarded copies", n)
	}
	_ = list(v4, nil)
	_ = list(v6, nil)
	if n := accepted.Load(); n < 2 {
		t.Fatalf("unguarded, the listeners accepted %d connections: they would not have seen a guarded one either", n)
	}
}
