package ocidir_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/ocidir"
	"github.com/regwire/regwire/internal/tagselect"
	"github.com/regwire/regwire/internal/test/testutil"
)

// fixture pushes 3 repositories × 2 tags (one a multi-platform index), a cosign signature
// tag for one image and an OCI 1.1 referrer of another, and returns every tag's digest.
func fixture(t *testing.T, reg string) map[string]v1.Hash {
	t.Helper()
	want := map[string]v1.Hash{}
	for _, repo := range []string{"team/api", "team/web", "tools/lint"} {
		want[repo+":1.0"] = testutil.PushIndex(t, reg+"/"+repo+":1.0", []string{"linux/amd64", "linux/arm64"}, 4096, 2)
		img := testutil.PushImage(t, reg+"/"+repo+":2.0", 8192, 3)
		want[repo+":2.0"], _ = img.Digest()
	}
	// A cosign-style signature of team/api:2.0, as a tag sha256-<hex>.sig.
	d := want["team/api:2.0"]
	sig := testutil.PushImage(t, reg+"/team/api:sha256-"+d.Hex+".sig", 256, 1)
	want["team/api:sha256-"+d.Hex+".sig"], _ = sig.Digest()
	// An OCI 1.1 referrer (an SBOM-like artifact) of team/web:2.0.
	sd, err := remote.Head(testutil.Ref(t, reg+"/team/web:2.0"))
	if err != nil {
		t.Fatal(err)
	}
	art, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	withSubject := mutate.Subject(art, v1.Descriptor{MediaType: sd.MediaType, Digest: sd.Digest, Size: sd.Size}).(v1.Image)
	ad, _ := withSubject.Digest()
	if err := remote.Write(testutil.Ref(t, reg+"/team/web@"+ad.String()), withSubject); err != nil {
		t.Fatal(err)
	}
	want["referrer"] = ad
	return want
}

// countingBlobs counts the blob GETs a registry serves, and calls cancel once there have
// been cancelAfter of them (when set).
func countingBlobs(t *testing.T, reg *testutil.Registry, cancelAfter *atomic.Int64, cancel *atomic.Value) (*testutil.Hostile, *atomic.Int64) {
	t.Helper()
	var served atomic.Int64
	h := testutil.StartHostile(t, reg, func(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			if n := served.Add(1); cancelAfter.Load() > 0 && n >= cancelAfter.Load() {
				if c, ok := cancel.Load().(context.CancelFunc); ok {
					c()
				}
			}
		}
		return false
	})
	return h, &served
}

// TestARegistryGoesToADirectoryAndFromItIntoAFreshRegistryDigestEqual: 3 repositories,
// their tags, an index, a signature tag and an OCI referrer go registry → oci:DIR (with
// SHA256SUMS) → a fresh registry, every digest equal; a copy to the directory stopped
// half-way and run again reads from the source only the blobs it lacks; a corrupt blob in
// the directory is named when the directory is copied out.
func TestARegistryGoesToADirectoryAndFromItIntoAFreshRegistryDigestEqual(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	want := fixture(t, src.Host)
	var cancelAfter atomic.Int64
	var cancel atomic.Value
	counted, gets := countingBlobs(t, src, &cancelAfter, &cancel)

	dir, err := ocidir.Open(filepath.Join(t.TempDir(), "carry"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ocidir.Serve(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	sel, _ := tagselect.New(tagselect.Spec{Pattern: `[0-9.]+`})
	toDir := func(ctx context.Context) []imagecopy.Result {
		u := &imagecopy.Under{Source: imagecopy.Endpoint{Repository: counted.Host()}, Target: imagecopy.Endpoint{Repository: srv.Host}}
		repos, err := u.Sync(ctx, sel, imagecopy.Options{Jobs: 2, Referrers: true})
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		return imagecopy.Flatten(repos)
	}

	// Stopped after 4 blobs: some are in the directory, others not.
	ctx, stop := context.WithCancel(context.Background())
	cancel.Store(stop)
	cancelAfter.Store(4)
	toDir(ctx)
	stop()
	cancelAfter.Store(0)
	first := gets.Swap(0)
	if first < 4 {
		t.Fatalf("the interrupted run read %d blobs", first)
	}
	for _, res := range toDir(context.Background()) {
		if res.Err != nil {
			t.Errorf("%s: %v", res.Tag, res.Err)
		}
	}
	second := gets.Swap(0)
	t.Logf("blob reads: %d in the stopped run, %d in the rerun", first, second)
	// Every blob of the set: 3 × (2 platforms × (2 layers + config) + 3 layers + config) +
	// the signature's 2 + the SBOM's 2 at most.
	total := int64(3*(2*3+4) + 2 + 2)
	if second >= total || first+second > total+int64(2) { // two may have been under way when stopped
		t.Errorf("blob reads: %d before the stop, %d after, for %d blobs: the rerun read again what was there", first, second, total)
	}
	for _, res := range toDir(context.Background()) {
		if res.Err != nil || !res.UpToDate {
			t.Errorf("an up-to-date rerun, %s: %+v", res.Tag, res)
		}
	}
	if n := gets.Load(); n != 0 {
		t.Errorf("an up-to-date rerun read %d blobs", n)
	}
	if err := dir.WriteChecksums(); err != nil {
		t.Fatal(err)
	}
	if sha, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(sha, "--quiet", "-c", ocidir.Checksums)
		cmd.Dir = dir.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
		}
	}

	// Across: the directory into a fresh registry, every digest equal, referrers too.
	fresh := testutil.StartRegistry(t, testutil.RegistryOptions{})
	fromDir := &imagecopy.Under{Source: imagecopy.Endpoint{Repository: srv.Host}, Target: imagecopy.Endpoint{Repository: fresh.Host}}
	all, _ := tagselect.New(tagselect.Spec{Pattern: ".*"})
	repos, err := fromDir.Sync(context.Background(), all, imagecopy.Options{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range imagecopy.Flatten(repos) {
		if res.Err != nil {
			t.Errorf("%s: %v", res.Tag, res.Err)
		}
	}
	for ref, d := range want {
		if ref == "referrer" {
			continue
		}
		got, err := remote.Head(testutil.Ref(t, fresh.Host+"/"+ref))
		if err != nil || got.Digest != d {
			t.Errorf("%s in the fresh registry: %v %v, want %s", ref, got, err, d)
		}
	}
	webRepo, _ := name.NewRepository(fresh.Host + "/team/web")
	idx, err := remote.Referrers(webRepo.Digest(want["team/web:2.0"].String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want["referrer"] {
		t.Errorf("team/web:2.0's referrers in the fresh registry: %+v, want the SBOM %s", im.Manifests, want["referrer"])
	}

	// A blob corrupted on the way: copying the directory out names it.
	layer := largestBlob(t, dir.Root())
	b, _ := os.ReadFile(layer)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(layer, b, 0o644); err != nil {
		t.Fatal(err)
	}
	other := testutil.StartRegistry(t, testutil.RegistryOptions{})
	repos, err = (&imagecopy.Under{Source: imagecopy.Endpoint{Repository: srv.Host}, Target: imagecopy.Endpoint{Repository: other.Host}}).
		Sync(context.Background(), all, imagecopy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var named bool
	for _, res := range imagecopy.Flatten(repos) {
		var se *imagecopy.SideError
		if res.Err != nil && strings.Contains(res.Err.Error(), layer) && strings.Contains(res.Err.Error(), "is corrupt") && errors.As(res.Err, &se) && se.Side == "source" {
			named = true
		}
	}
	if !named {
		t.Errorf("no tag's error names the corrupt blob %s: %+v", layer, imagecopy.Flatten(repos))
	}
}

func largestBlob(t *testing.T, root string) string {
	t.Helper()
	var best string
	var size int64
	entries, _ := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // an upload under way, not a blob
		}
		if fi, err := e.Info(); err == nil && fi.Size() > size {
			best, size = filepath.Join(root, "blobs", "sha256", e.Name()), fi.Size()
		}
	}
	return best
}
