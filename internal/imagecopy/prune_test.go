package imagecopy_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// pushTags pushes one random image per tag and returns the tags' digests; tags listed
// together in one group share an image.
func pushTags(t *testing.T, repo string, groups ...[]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range groups {
		img := testutil.PushImage(t, repo+":"+g[0], 256, 1)
		d, _ := img.Digest()
		for _, tag := range g {
			ref, err := name.NewTag(repo + ":" + tag)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Tag(ref, img); err != nil {
				t.Fatal(err)
			}
			out[tag] = d.String()
		}
	}
	return out
}

func TestPruneRemovesOnlyWhatItWroteAndNothingAnotherTagOrCopyStillUses(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	repo := reg.Host + "/m/app"
	// mine-a alone; mine-b shares its image with someone else's tag; mine-e with a tag this
	// copy keeps; mine-c was rewritten by someone since; mine-d another copy holds;
	// mine-f is gone already.
	d := pushTags(t, repo, []string{"mine-a"}, []string{"mine-b", "theirs"}, []string{"mine-e", "kept"}, []string{"mine-c"}, []string{"mine-d"})
	written := map[string]string{"mine-a": d["mine-a"], "mine-b": d["mine-b"], "mine-c": "sha256:" + strings.Repeat("c", 64),
		"mine-d": d["mine-d"], "mine-e": d["mine-e"], "mine-f": "sha256:" + strings.Repeat("f", 64)}
	var candidates []imagecopy.Owned
	for _, tag := range []string{"mine-a", "mine-b", "mine-c", "mine-d", "mine-e", "mine-f"} {
		candidates = append(candidates, imagecopy.Owned{Tag: tag, Digest: written[tag]})
	}
	protected := func(digest string) bool { return digest == d["mine-d"] }
	want := map[string]string{"mine-a": "", "mine-b": imagecopy.KeptShared, "mine-c": imagecopy.KeptRewritten,
		"mine-d": imagecopy.KeptProtected, "mine-e": imagecopy.KeptShared, "mine-f": imagecopy.KeptGone}

	check := func(t *testing.T, got []imagecopy.Pruned, removed string) {
		t.Helper()
		for _, p := range got {
			if p.Err != nil || p.Kept != want[p.Tag] || p.Removed != (p.Tag == removed) {
				t.Errorf("%s: removed %v, kept %q, err %v; want kept %q", p.Tag, p.Removed, p.Kept, p.Err, want[p.Tag])
			}
		}
	}
	engine := func() *imagecopy.Engine {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: reg.Host + "/unused"}, imagecopy.Endpoint{Repository: repo}, imagecopy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	ctx := context.Background()

	dry, err := engine().Prune(ctx, candidates, protected, true)
	if err != nil {
		t.Fatal(err)
	}
	check(t, dry, "mine-a")
	if _, err := remote.Head(testutil.Ref(t, repo+":mine-a")); err != nil {
		t.Fatalf("a dry run deleted mine-a: %v", err)
	}

	got, err := engine().Prune(ctx, candidates, protected, false)
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, "mine-a")
	if _, err := remote.Head(testutil.Ref(t, repo+":mine-a")); err == nil {
		t.Error("mine-a is still there")
	}
	for _, tag := range []string{"theirs", "kept", "mine-b", "mine-c", "mine-d", "mine-e"} {
		if h, err := remote.Head(testutil.Ref(t, repo+":"+tag)); err != nil || h.Digest.String() != d[tag] {
			t.Errorf("%s after the prune: %v %v, want %s", tag, h, err, d[tag])
		}
	}

	// A prune that stopped after deleting and runs again deletes nothing more: what it
	// deleted is gone, the rest stays for the same reasons.
	want["mine-a"] = imagecopy.KeptGone
	again, err := engine().Prune(ctx, candidates, protected, false)
	if err != nil {
		t.Fatal(err)
	}
	check(t, again, "")
}

func TestPruneOnARegistryThatRefusesDeletesSaysSoAndHowToFixIt(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	refusing := testutil.StartHostile(t, reg, func(_ *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodDelete {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}`))
			return true
		}
		return false
	})
	d := pushTags(t, reg.Host+"/m/app", []string{"old"})
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: reg.Host + "/unused"}, imagecopy.Endpoint{Repository: refusing.Host() + "/m/app"}, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := eng.Prune(context.Background(), []imagecopy.Owned{{Tag: "old", Digest: d["old"]}}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Removed || !errors.Is(got[0].Err, imagecopy.ErrDeleteRefused) || !strings.Contains(got[0].Err.Error(), "storage.delete.enabled") {
		t.Errorf("prune on a registry refusing deletes: %+v", got)
	}
	if _, err := remote.Head(testutil.Ref(t, reg.Host+"/m/app:old")); err != nil {
		t.Errorf("old is gone: %v", err)
	}
}
