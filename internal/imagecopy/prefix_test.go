package imagecopy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// pathRouted serves a registry's API under prefix only, the way Nexus serves a repository
// with path-based routing (/repository/<name>/v2/...), Locations included.
func pathRouted(t *testing.T, registry, prefix string) string {
	t.Helper()
	u, _ := url.Parse("http://" + registry)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "/v2/") {
			resp.Header.Set("Location", prefix+strings.TrimPrefix(loc, "/v2"))
		} else if l, err := url.Parse(loc); err == nil && strings.HasPrefix(l.Path, "/v2/") {
			l.Host, l.Path = resp.Request.Host, prefix+strings.TrimPrefix(l.Path, "/v2")
			resp.Header.Set("Location", l.String())
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			http.Error(w, "not under "+prefix, http.StatusNotFound)
			return
		}
		r.URL.Path, r.URL.RawPath = "/v2"+rest, ""
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestATargetServedUnderAPathIsWritten copies into a registry whose API lives under
// /repository/my-docker/v2 (a RegistryMirror endpoint with a path, containerd's
// override_path): every request goes under the path, and the image lands.
func TestATargetServedUnderAPathIsWritten(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	const prefix = "/repository/my-docker/v2"
	routed := pathRouted(t, dst.Host, prefix)
	d := testutil.PushIndex(t, src.Host+"/library/busybox:1.36", []string{"linux/amd64", "linux/arm64"}, 2048, 2)

	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/busybox"},
		imagecopy.Endpoint{Repository: routed + "/busybox", PathPrefix: prefix}, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := eng.CopyTag(context.Background(), "1.36"); r.Err != nil || r.TargetDigest != d.String() {
		t.Fatalf("copy: %+v", r)
	}
	if r := eng.CopyTag(context.Background(), "1.36"); r.Err != nil || !r.UpToDate {
		t.Fatalf("rerun: %+v", r)
	}
	got, err := remote.Head(testutil.Ref(t, dst.Host+"/busybox:1.36"))
	if err != nil || got.Digest != d {
		t.Errorf("registry behind the path: %v %v, want %s", got, err, d)
	}

	if _, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/x"}, imagecopy.Endpoint{Repository: routed + "/x", PathPrefix: "repository/../v2"}, imagecopy.Options{}); err == nil ||
		!strings.Contains(err.Error(), "target path prefix") {
		t.Errorf("a relative prefix: %v", err)
	}
}
