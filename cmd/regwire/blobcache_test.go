package main

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/regwire/regwire/internal/blobcache"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestTheBlobCacheNeverBreaksAnImage runs `regwire sync` as separate processes sharing a
// blob cache file, as CI jobs calling it once per repository do:
//   - a wrong entry (a repository that never held the blobs) costs a failed mount: the
//     blobs are uploaded and the image is complete;
//   - a right one saves the upload: the next repository gets every blob by mount (0 bytes);
//   - an entry whose repository lost a blob since: the mount fails, the blob is uploaded.
//
// Every target image is read back in full (every blob, digests checked).
func TestTheBlobCacheNeverBreaksAnImage(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(testutil.Ref(t, src.Host+"/library/app:1"), img); err != nil {
		t.Fatal(err)
	}
	cacheFile := filepath.Join(t.TempDir(), "blobs.db")
	layers, _ := img.Layers()
	cfg, _ := img.ConfigName()
	digests := []v1.Hash{cfg}
	for _, l := range layers {
		d, _ := l.Digest()
		digests = append(digests, d)
	}
	// A wrong entry for every blob: ghost/none never held any of them.
	var wrong []blobcache.Hint
	for _, d := range digests {
		wrong = append(wrong, blobcache.Hint{Registry: dst.Host, Digest: d.String(), Repo: "ghost/none", At: time.Now()})
	}
	if err := blobcache.Save(cacheFile, wrong, time.Now()); err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	sync := func(repo string) string {
		t.Helper()
		out, err := exec.Command(bin, "sync", src.Host+"/library/app", dst.Host+"/"+repo, "--tags", "1", "--insecure", "--progress", "lines", "--blob-cache", cacheFile).CombinedOutput()
		if err != nil {
			t.Fatalf("sync into %s: %v\n%s", repo, err, out)
		}
		full := testutil.Ref(t, dst.Host+"/"+repo+":1")
		got, err := remote.Image(full)
		if err == nil {
			err = validate.Image(got)
		}
		if err != nil {
			t.Fatalf("%s is not a complete image after the sync: %v\n%s", full, err, out)
		}
		return string(out)
	}
	uploaded := regexp.MustCompile(`copied +1 sha256:[0-9a-f]+ \(([^)]+)\)`)
	bytesOf := func(out string) int64 {
		m := uploaded.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no copy line in:\n%s", out)
		}
		q, err := resource.ParseQuantity(strings.TrimSuffix(m[1], "B"))
		if err != nil {
			t.Fatal(err)
		}
		return q.Value()
	}
	const layer = 256 << 10

	if b := bytesOf(sync("team/one")); b < 3*layer {
		t.Errorf("with only wrong entries %d bytes were uploaded, want the 3 layers: the rest can only have come from mounts that should have failed", b)
	}
	// What goes over the wire is the manifest, under a KiB: every blob is mounted.
	if b := bytesOf(sync("team/two")); b >= 4<<10 {
		t.Errorf("the second process uploaded %d bytes; with team/one in the cache every blob should have been mounted", b)
	}
	// team/two, the newest entry, loses a layer.
	lost := digests[1]
	req, _ := http.NewRequest(http.MethodDelete, dst.URL+"/v2/team/two/blobs/"+lost.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("deleting %s from team/two: %v %v", lost, err, resp)
	}
	_ = resp.Body.Close()
	if b := bytesOf(sync("team/three")); b < layer || b >= 2*layer {
		t.Errorf("after team/two lost a layer, team/three uploaded %d bytes, want that one layer (the failed mount) and no more", b)
	}
}
