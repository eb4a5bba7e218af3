package imagecopy_test

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// protocolRecorder serves a registry over TLS with HTTP/2 offered, and notes the
// protocol of every request.
type protocolRecorder struct {
	mu   sync.Mutex
	seen map[string]map[string]int // "METHOD kind" → protocol → count
}

func (p *protocolRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		key := requestKind(r)
		if p.seen[key] == nil {
			p.seen[key] = map[string]int{}
		}
		p.seen[key][r.Proto]++
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func startHTTP2Registry(t *testing.T) (*httptest.Server, *protocolRecorder, []byte) {
	t.Helper()
	rec := &protocolRecorder{seen: map[string]map[string]int{}}
	srv := httptest.NewUnstartedServer(rec.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, rec, ca
}

// TestBlobContentsTravelOverHTTP1AndTheRestOverHTTP2: against registries that offer
// HTTP/2, every request that carries a blob's bytes (GET, and the upload's POST, PATCH and
// PUT) goes over HTTP/1.1 connections, while manifests and existence checks share the
// registry's HTTP/2 connection.
func TestBlobContentsTravelOverHTTP1AndTheRestOverHTTP2(t *testing.T) {
	t.Parallel()
	src, srcSeen, srcCA := startHTTP2Registry(t)
	dst, dstSeen, dstCA := startHTTP2Registry(t)
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	srcHost := strings.TrimPrefix(src.URL, "https://")
	dstHost := strings.TrimPrefix(dst.URL, "https://")
	if err := remote.Write(testutil.Ref(t, srcHost+"/app:1.0"), img, remote.WithTransport(src.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	srcSeen.mu.Lock()
	srcSeen.seen = map[string]map[string]int{} // only what the copy sends
	srcSeen.mu.Unlock()

	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: srcHost + "/app", CA: srcCA}, imagecopy.Endpoint{Repository: dstHost + "/app", CA: dstCA},
		imagecopy.Options{Cache: imagecopy.NewCache(0)})
	if err != nil {
		t.Fatal(err)
	}
	if res := eng.CopyTag(context.Background(), "1.0"); res.Err != nil {
		t.Fatal(res.Err)
	}

	for _, tc := range []struct {
		name  string
		seen  *protocolRecorder
		key   string
		proto string
	}{
		{"the source's layers are read over HTTP/1.1", srcSeen, "GET blob", "HTTP/1.1"},
		{"the source's manifest is read over HTTP/2", srcSeen, "GET manifest", "HTTP/2.0"},
		{"uploads start over HTTP/1.1", dstSeen, "POST blob", "HTTP/1.1"},
		{"upload bodies go over HTTP/1.1", dstSeen, "PATCH blob", "HTTP/1.1"},
		{"uploads end over HTTP/1.1", dstSeen, "PUT blob", "HTTP/1.1"},
		{"the target's blob checks share HTTP/2", dstSeen, "HEAD blob", "HTTP/2.0"},
		{"the manifest is pushed over HTTP/2", dstSeen, "PUT manifest", "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.seen.mu.Lock()
			defer tc.seen.mu.Unlock()
			got := tc.seen.seen[tc.key]
			if got[tc.proto] == 0 {
				t.Fatalf("no %s request over %s; seen: %v", tc.key, tc.proto, got)
			}
			for proto, n := range got {
				if proto != tc.proto {
					t.Errorf("%d %s request(s) over %s, want every one over %s", n, tc.key, proto, tc.proto)
				}
			}
		})
	}
}
