package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/test/testutil"
)

// TestSyncFileRunsEveryImageSyncOnceSharingBlobs runs `regwire sync -f` on three ImageSync
// manifests whose images share a 2 MiB base layer: the layer crosses to the target once
// (the other repositories get it by mount), and the rerun costs a HEAD per tag on each side.
func TestSyncFileRunsEveryImageSyncOnceSharingBlobs(t *testing.T) {
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(2<<20, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"team/a", "team/b", "team/c"} {
		for _, tag := range []string{"1.0", "1.1"} {
			own, _ := random.Layer(1024, "application/vnd.oci.image.layer.v1.tar+gzip")
			img, err := mutate.AppendLayers(empty.Image, base, own)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(testutil.Ref(t, src.Host+"/"+repo+":"+tag), img); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The target behind a proxy counting the bytes it receives.
	u, _ := url.Parse(dst.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var uploaded atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 {
			uploaded.Add(r.ContentLength)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	target := front.Listener.Addr().String()

	var docs []string
	for _, repo := range []string{"a", "b", "c"} {
		docs = append(docs, fmt.Sprintf(`apiVersion: regwire.dev/v1alpha1
kind: ImageSync
metadata:
  name: %s
  namespace: apps
spec:
  source:
    image: %s/team/%s
    semver: ">=1.0"
  target:
    image: %s/mirror/%s
`, repo, src.Host, repo, target, repo))
	}
	file := filepath.Join(t.TempDir(), "syncs.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := execute("sync", "-f", file, "--jobs", "6")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"3 repositories, 6 tag(s): 6 copied, 0 up to date, 0 failed", "copied     " + target + "/mirror/b:1.1 sha256:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := uploaded.Load(); n < 2<<20 || n > 2<<20+200<<10 {
		t.Errorf("the target received %d bytes; want the 2 MiB base once plus small layers and manifests", n)
	}
	out, err = execute("sync", "-f", file)
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	// Per tag: one HEAD on each side. Per repository: a tag listing (semver). Per registry
	// (not per repository: the session is shared): one ping, https first, then plain http
	// on these test registries, 2 requests.
	for _, want := range []string{"6 tag(s): 0 copied, 6 up to date, 0 failed", "19 requests: 12 manifest checks for 6 tag(s) and 0 referrer(s), 7 other"} {
		if !strings.Contains(out, want) {
			t.Errorf("rerun output lacks %q:\n%s", want, out)
		}
	}
}

func TestSyncFileRefusesWhatOnlyTheControllerCanDo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, spec, want string }{
		{"a target given as a RegistryMirror is refused, naming spec.target.image",
			"source: {image: r.example/a, tags: [\"1\"]}\n  target: {registryMirrorRef: {name: m}}", "spec.target.image is empty"},
		{"credentials from a Secret are refused, naming the field",
			"source: {image: r.example/a, tags: [\"1\"], credentialsSecretRef: {name: s}}\n  target: {image: r.example/b}", "credentialsSecretRef"},
		{"a prefix is refused, saying which command copies it",
			"source: {image: r.example/team, repositories: Prefix, tags: [\"1\"]}\n  target: {image: r.example/m}", "regwire sync --prefix r.example/team r.example/m"},
		{"a bad tag pattern names spec.source.tagPattern",
			"source: {image: r.example/a, tagPattern: \"(\"}\n  target: {image: r.example/b}", "spec.source.tagPattern"},
		{"no selection says how to select",
			"source: {image: r.example/a}\n  target: {image: r.example/b}", "select tags with tags, tagPattern or semver"},
		{"an unknown field is refused",
			"source: {image: r.example/a, tags: [\"1\"], tag: x}\n  target: {image: r.example/b}", "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "s.yaml")
			doc := "apiVersion: regwire.dev/v1alpha1\nkind: ImageSync\nmetadata: {name: x}\nspec:\n  " + tc.spec + "\n"
			if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readSyncFile(file, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
