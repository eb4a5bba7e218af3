package imagecopy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestBearerTokenRegistriesOnBothSides copies between registries that want bearer tokens
// from a token server (the flow of Docker Hub, Harbor, Nexus's Docker Bearer Token realm):
// the engine trades its credentials for tokens, mounts a shared blob across repositories
// with a token that also covers the repository it mounts from, and a wrong password fails
// as an auth failure on the right side.
func TestBearerTokenRegistriesOnBothSides(t *testing.T) {
	t.Parallel()
	tokens := testutil.StartTokenServer(t, map[string]string{"reader": "read-pw", "pusher": "push-pw"})
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Token: tokens})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{Token: tokens})
	reader, pusher := &authn.Basic{Username: "reader", Password: "read-pw"}, &authn.Basic{Username: "pusher", Password: "push-pw"}
	base, _ := random.Layer(64<<10, types.OCILayer)
	for _, repo := range []string{"one", "two"} {
		img, _ := random.Image(1024, 1)
		img = mustAppend(t, img, base)
		if err := remote.Write(testutil.Ref(t, src.Host+"/apps/"+repo+":1"), img, remote.WithAuth(pusher)); err != nil {
			t.Fatal(err)
		}
	}
	before := tokens.Issued.Load()
	cache := imagecopy.NewCache(0)
	watch := &uploads{}
	for _, repo := range []string{"one", "two"} {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/apps/" + repo, Auth: reader},
			imagecopy.Endpoint{Repository: dst.Host + "/mirror/" + repo, Auth: pusher, Wrap: func(rt http.RoundTripper) http.RoundTripper { watch.next = rt; return watch }},
			imagecopy.Options{Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		if r := eng.CopyTag(context.Background(), "1"); r.Err != nil || r.UpToDate {
			t.Fatalf("%s: %+v", repo, r)
		}
		want, _ := remote.Head(testutil.Ref(t, src.Host+"/apps/"+repo+":1"), remote.WithAuth(reader))
		got, err := remote.Head(testutil.Ref(t, dst.Host+"/mirror/"+repo+":1"), remote.WithAuth(pusher))
		if err != nil || got.Digest != want.Digest {
			t.Errorf("%s in the target: %v %v, want %s", repo, got, err, want.Digest)
		}
	}
	if tokens.Issued.Load() == before {
		t.Error("no token was issued: the bearer flow was not used")
	}
	if watch.mounted.Load() < 1 {
		t.Error("the shared layer was not mounted into the second repository")
	}

	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/apps/one", Auth: &authn.Basic{Username: "reader", Password: "wrong"}},
		imagecopy.Endpoint{Repository: dst.Host + "/mirror/x", Auth: pusher}, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := eng.CopyTag(context.Background(), "1")
	if r.Err == nil || !strings.Contains(r.Err.Error(), "source ") || !strings.Contains(r.Err.Error(), "401") {
		t.Errorf("a wrong source password: %v, want a 401 on the source", r.Err)
	}
}
