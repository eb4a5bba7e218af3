package imagecopy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestEnginesShareARegistrySession: Engines sharing a Cache ask a registry that wants no
// token for its challenge once (GET /v2/), not once per repository; other credentials get
// their own session; Engines without a shared Cache each ask.
func TestEnginesShareARegistrySession(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": "a-password", "bob": "b-password"}})
	for _, repo := range []string{"a", "b", "c"} {
		img, _ := random.Image(512, 1)
		if err := remote.Write(testutil.Ref(t, src.Host+"/"+repo+":1"), img); err != nil {
			t.Fatal(err)
		}
	}
	pings := func(upstream string) (string, *atomic.Int64) {
		u, _ := url.Parse(upstream)
		proxy := httputil.NewSingleHostReverseProxy(u)
		n := &atomic.Int64{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				n.Add(1)
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String(), n
	}
	sel, _ := tagselect.New(tagselect.Spec{Tags: []string{"1"}})
	sync := func(cache *imagecopy.Cache, srcHost, dstHost, repo, user string) {
		t.Helper()
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: srcHost + "/" + repo},
			imagecopy.Endpoint{Repository: dstHost + "/" + user + "/" + repo, Auth: &authn.Basic{Username: user, Password: user[:1] + "-password"}},
			imagecopy.Options{Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		tags, err := eng.Tags(context.Background(), sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range eng.Sync(context.Background(), tags) {
			if r.Err != nil {
				t.Fatalf("%s for %s: %v", repo, user, r.Err)
			}
		}
	}

	for _, tc := range []struct {
		name                 string
		shared               bool
		wantSource, wantDest int64
	}{
		{"engines sharing a cache ping each registry once per set of credentials", true, 1, 2},
		{"engines with caches of their own ping for every repository", false, 6, 6},
	} {
		srcHost, srcPings := pings(src.URL)
		dstHost, dstPings := pings(dst.URL)
		cache := imagecopy.NewCache(0)
		for _, user := range []string{"alice", "bob"} {
			for _, repo := range []string{"a", "b", "c"} {
				c := cache
				if !tc.shared {
					c = imagecopy.NewCache(0)
				}
				sync(c, srcHost, dstHost, repo, user)
			}
		}
		if srcPings.Load() != tc.wantSource || dstPings.Load() != tc.wantDest {
			t.Errorf("%s: source pinged %d times, target %d; want %d and %d", tc.name, srcPings.Load(), dstPings.Load(), tc.wantSource, tc.wantDest)
		}
	}
}

// TestNamedTagsNeedNoListing: tags selected by name only are synced without listing the
// source (one HEAD per side and tag), and a named tag the source lacks fails, saying so.
func TestNamedTagsNeedNoListing(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img, _ := random.Image(512, 1)
	if err := remote.Write(testutil.Ref(t, src.Host+"/app:1.0"), img); err != nil {
		t.Fatal(err)
	}
	sel, _ := tagselect.New(tagselect.Spec{Tags: []string{"1.0", "9.9"}})
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/app"}, imagecopy.Endpoint{Repository: dst.Host + "/app"}, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tags, err := eng.Tags(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	res := eng.Sync(context.Background(), tags)
	if len(res) != 2 || res[0].Err != nil || res[1].Err == nil {
		t.Fatalf("results %+v: want 1.0 copied and 9.9 failed", res)
	}
	if msg := res[1].Err.Error(); !strings.Contains(msg, "source") || !strings.Contains(msg, "app:9.9") {
		t.Errorf("the missing tag's error %q does not name the source side and the tag", msg)
	}
	srcReq, _ := eng.Requests()
	if n := srcReq.All.Load(); n != 7 { // ping (https, then http), 2 HEADs, GETs of manifest, config and layer
		t.Errorf("%d requests to the source", n)
	}
	again, _ := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/app"}, imagecopy.Endpoint{Repository: dst.Host + "/app"}, imagecopy.Options{})
	tags, _ = again.Tags(context.Background(), sel)
	_ = again.Sync(context.Background(), tags[:1])
	s, d := again.Requests()
	// The rerun: a HEAD per side, and a ping per side (2 requests each on plain HTTP).
	if s.ManifestHeads.Load() != 1 || d.ManifestHeads.Load() != 1 || s.All.Load()+d.All.Load() != 6 {
		t.Errorf("rerun: %d+%d HEADs, %d requests in all; want 1+1 and 6 (no listing)", s.ManifestHeads.Load(), d.ManifestHeads.Load(), s.All.Load()+d.All.Load())
	}
}
