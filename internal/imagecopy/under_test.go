package imagecopy_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// kinds counts the requests a registry received by kind, at the registry.
type kinds struct {
	mu     sync.Mutex
	counts map[string]int
}

func (k *kinds) count(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
	kind := requestKind(r)
	switch {
	case strings.HasSuffix(r.URL.Path, "/_catalog"):
		kind = r.Method + " catalog"
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		kind = r.Method + " tags"
	}
	k.mu.Lock()
	k.counts[kind]++
	k.mu.Unlock()
	return false
}

func (k *kinds) reset() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.counts
	k.counts = map[string]int{}
	return out
}

// TestAPrefixOf50RepositoriesIsCopiedUnderANewNameAndAResyncCostsAListPerRepositoryAndAHeadPerTag
// copies every repository below registry/team (50 of them, two levels deep, sharing a base
// layer) to mirror/..., leaves alone the repositories beside the prefix, and counts, at
// both registries, what an up-to-date rerun costs.
func TestAPrefixOf50RepositoriesIsCopiedUnderANewNameAndAResyncCostsAListPerRepositoryAndAHeadPerTag(t *testing.T) {
	t.Parallel()
	srcReg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dstReg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	srcCount, dstCount := &kinds{counts: map[string]int{}}, &kinds{counts: map[string]int{}}
	src, dst := testutil.StartHostile(t, srcReg, srcCount.count), testutil.StartHostile(t, dstReg, dstCount.count)

	base, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 50 {
		path := fmt.Sprintf("app-%02d", i)
		if i%5 == 0 {
			path = fmt.Sprintf("tools/app-%02d", i)
		}
		testutil.PushShared(t, srcReg.Host+"/team/"+path, base, "1.0", "1.1")
		want = append(want, path)
	}
	slices.Sort(want)
	// Beside the prefix, not below it.
	testutil.PushShared(t, srcReg.Host+"/teamwork/app", base, "1.0")
	testutil.PushShared(t, srcReg.Host+"/other/app", base, "1.0")

	under := &imagecopy.Under{
		Source: imagecopy.Endpoint{Repository: src.Host() + "/team"},
		Target: imagecopy.Endpoint{Repository: dst.Host() + "/mirror"},
	}
	sel, _ := tagselect.New(tagselect.Spec{Pattern: ".*"})
	cache := imagecopy.NewCache(0)
	ctx := context.Background()
	repos, err := under.Sync(ctx, sel, imagecopy.Options{Jobs: 4, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range repos {
		got = append(got, r.Path)
		if r.Err != nil || len(r.Results) != 2 {
			t.Errorf("%s: %v, %d results", r.Path, r.Err, len(r.Results))
		}
		for _, res := range r.Results {
			if res.Err != nil || res.UpToDate || res.TargetDigest != res.SourceDigest {
				t.Errorf("%s:%s: %+v", r.Path, res.Tag, res)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("repositories copied: %v\nwant %v", got, want)
	}
	// Renamed: the prefix replaced, the path below it kept; digests equal.
	for _, path := range []string{"app-01", "tools/app-05"} {
		s, err := remote.Head(testutil.Ref(t, srcReg.Host+"/team/"+path+":1.1"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(testutil.Ref(t, dstReg.Host+"/mirror/"+path+":1.1"))
		if err != nil || d.Digest != s.Digest {
			t.Errorf("mirror/%s:1.1 = %v %v, want %s", path, d, err, s.Digest)
		}
	}
	for _, beside := range []string{"mirror/work/app", "mirror/teamwork/app", "mirror/other/app"} {
		if _, err := remote.Head(testutil.Ref(t, dstReg.Host+"/"+beside+":1.0")); err == nil {
			t.Errorf("%s was copied: it is beside the prefix, not below it", beside)
		}
	}
	// The shared base layer crossed once per target repository at most as a mount, never
	// 50 uploads: count blob PUTs of the base only through the target's blob POSTs.
	if cold := dstCount.reset(); cold["PUT manifest"] != 100 {
		t.Errorf("cold copy: %d manifest PUTs, want 100 (%v)", cold["PUT manifest"], cold)
	}
	srcCount.reset()

	again, err := under.Sync(ctx, sel, imagecopy.Options{Jobs: 4, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range imagecopy.Flatten(again) {
		if res.Err != nil || !res.UpToDate {
			t.Errorf("resync of %s: %+v", res.Tag, res)
		}
	}
	if got, want := srcCount.reset(), map[string]int{"GET catalog": 1, "GET tags": 50, "HEAD manifest": 100}; !maps.Equal(got, want) {
		t.Errorf("source requests of an up-to-date resync: %v, want %v (one list per repository, one HEAD per tag)", got, want)
	}
	if got, want := dstCount.reset(), map[string]int{"HEAD manifest": 100}; !maps.Equal(got, want) {
		t.Errorf("target requests of an up-to-date resync: %v, want %v (one HEAD per tag)", got, want)
	}
}

func TestAPrefixKeepsOrStripsItsPathAndCopiesOnlyTheRepositoriesThePatternMatches(t *testing.T) {
	t.Parallel()
	srcReg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dstReg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(1024, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"team/api", "team/web", "team/tools/lint", "library/busybox"} {
		testutil.PushShared(t, srcReg.Host+"/"+repo, base, "1.0", "2.0-rc1")
	}
	sel, _ := tagselect.New(tagselect.Spec{Pattern: ".*", Exclude: ".*-rc.*"})
	cases := []struct {
		name, source, target, pattern string
		want                          []string // target repositories holding 1.0
	}{
		{"a prefix replaced by a shorter one strips it", "/team", "/m", "", []string{"m/api", "m/web", "m/tools/lint"}},
		{"a prefix replaced by a longer one keeps it", "/team", "/m/team", "", []string{"m/team/api", "m/team/web", "m/team/tools/lint"}},
		{"a pattern keeps the paths below the prefix it matches", "/team", "/p", "tools/.*", []string{"p/tools/lint"}},
		{"a registry alone copies every repository", "", "/all", "", []string{"all/team/api", "all/team/web", "all/team/tools/lint", "all/library/busybox"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := &imagecopy.Under{
				Source: imagecopy.Endpoint{Repository: srcReg.Host + tc.source},
				Target: imagecopy.Endpoint{Repository: dstReg.Host + tc.target},
			}
			if tc.pattern != "" {
				u.Pattern = regexp.MustCompile("^(?:" + tc.pattern + ")$")
			}
			repos, err := u.Sync(context.Background(), sel, imagecopy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(repos) != len(tc.want) {
				t.Errorf("%d repositories, want %d", len(repos), len(tc.want))
			}
			for _, r := range repos {
				if r.Err != nil || len(r.Results) != 1 || r.LeftOut.Excluded != 1 {
					t.Errorf("%s: %v, results %+v, left out %+v", r.Path, r.Err, r.Results, r.LeftOut)
				}
			}
			for _, repo := range tc.want {
				if _, err := remote.Head(testutil.Ref(t, dstReg.Host+"/"+repo+":1.0")); err != nil {
					t.Errorf("%s:1.0: %v", repo, err)
				}
				if _, err := remote.Head(testutil.Ref(t, dstReg.Host+"/"+repo+":2.0-rc1")); err == nil {
					t.Errorf("%s:2.0-rc1 was copied although excluded", repo)
				}
			}
		})
	}
}

func TestARepositoryTheTargetDoesNotAllowFailsAloneAndCostsNoRequest(t *testing.T) {
	t.Parallel()
	srcReg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dstReg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	var refused, allowed atomic.Int64
	dst := testutil.StartHostile(t, dstReg, func(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.Contains(r.URL.Path, "/m/secret/"):
			refused.Add(1)
		case strings.Contains(r.URL.Path, "/m/ok/"):
			allowed.Add(1)
		}
		return false
	})
	for _, repo := range []string{"team/ok", "team/secret"} {
		testutil.PushImage(t, srcReg.Host+"/"+repo+":1.0", 512, 1)
	}
	u := &imagecopy.Under{
		Source: imagecopy.Endpoint{Repository: srcReg.Host + "/team"},
		Target: imagecopy.Endpoint{Repository: dst.Host() + "/m"},
		Allow: func(target string) error {
			if strings.HasSuffix(target, "/secret") {
				return errors.New("not allowed")
			}
			return nil
		},
	}
	sel, _ := tagselect.New(tagselect.Spec{Tags: []string{"1.0"}})
	repos, err := u.Sync(context.Background(), sel, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	flat := imagecopy.Flatten(repos)
	if len(flat) != 2 || flat[0].Tag != "ok:1.0" || flat[0].Err != nil || flat[1].Tag != "secret" || flat[1].Err == nil {
		t.Fatalf("results: %+v", flat)
	}
	if refused.Load() != 0 || allowed.Load() == 0 {
		t.Errorf("target requests: %d for the refused repository (want 0), %d for the allowed one", refused.Load(), allowed.Load())
	}
	if _, err := remote.Head(testutil.Ref(t, dstReg.Host+"/m/secret:1.0")); err == nil {
		t.Error("the refused repository was written")
	}
}

func TestAPrefixOnARegistryWithoutACatalogSaysSoAndWhatToDo(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	var asked atomic.Bool
	hub := testutil.StartHostile(t, reg, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/_catalog") {
			asked.Store(true)
			http.Error(w, `{"errors":[{"code":"NOT_FOUND","message":"not found"}]}`, http.StatusNotFound)
			return true
		}
		return false
	})
	u := &imagecopy.Under{Source: imagecopy.Endpoint{Repository: hub.Host() + "/library"}, Target: imagecopy.Endpoint{Repository: reg.Host + "/m"}}
	sel, _ := tagselect.New(tagselect.Spec{Pattern: ".*"})
	_, err := u.Sync(context.Background(), sel, imagecopy.Options{})
	if !asked.Load() {
		t.Fatal("the catalog was never asked for")
	}
	if !errors.Is(err, imagecopy.ErrNoCatalog) || !strings.Contains(err.Error(), "name its repositories one by one") {
		t.Errorf("err = %v, want ErrNoCatalog saying what to do", err)
	}
	var se *imagecopy.SideError
	if !errors.As(err, &se) || se.Side != "source" || se.StatusCode != http.StatusNotFound {
		t.Errorf("err = %#v, want a source SideError with 404", err)
	}
}
