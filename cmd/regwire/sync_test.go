package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/test/testutil"
)

// TestSyncCopiesThenReportsUpToDate runs `regwire sync` between a registry with basic auth
// (credentials from a docker config, as crane reads them) and one with TLS.
func TestSyncCopiesThenReportsUpToDate(t *testing.T) {
	const password = "sync-password"
	src := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"bob": password}})
	ca := testutil.NewCA(t, "sync CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cert := ca.ServerTLS(t, "127.0.0.1")
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: &cert})
	for _, tag := range []string{"1.35.0", "1.36.1", "2.0.0", "edge"} {
		img, err := random.Image(1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(src.Host + "/library/busybox:" + tag)
		if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "bob", Password: password})); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("bob:" + password))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+src.Host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, []byte(ca.PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"sync", src.Host + "/library/busybox", dst.Host + "/my-docker/busybox", "--semver", ">=1.36 <2", "--tags", "edge", "--dst-ca", caFile}

	out, err := execute(append(args, "--dry-run")...)
	if err != nil || !strings.Contains(out, "2 tag(s): 2 to copy, 0 up to date, 0 failed") || !strings.Contains(out, "would copy 1.36.1") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = execute(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"copied     1.36.1 sha256:", "copied     edge sha256:", "2 tag(s): 2 copied, 0 up to date, 0 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "1.35.0") || strings.Contains(out, "2.0.0") {
		t.Errorf("copied tags outside the selection:\n%s", out)
	}
	out, err = execute(args...)
	if err != nil || !strings.Contains(out, "2 tag(s): 0 copied, 2 up to date, 0 failed") {
		t.Errorf("rerun: %v\n%s", err, out)
	}

	// Progress bars (what a terminal gets) end with the same result lines.
	barsArgs := []string{"sync", src.Host + "/library/busybox", dst.Host + "/bars/busybox", "--all-tags", "--dst-ca", caFile, "--progress", "bars"}
	out, err = execute(barsArgs...)
	if err != nil || !strings.Contains(out, "4 tag(s): 4 copied") || !strings.Contains(out, "KiB") {
		t.Errorf("with bars: %v\n%s", err, out)
	}

	// Without the CA the target fails, and the command says so with a non-zero exit.
	out, err = execute(args[:len(args)-2]...)
	if err == nil || !strings.Contains(err.Error(), "2 tag(s) failed") || !strings.Contains(out, "failed     edge: target") {
		t.Errorf("without --dst-ca: %v\n%s", err, out)
	}
	if strings.Contains(out, password) {
		t.Error("output leaks the password")
	}
	if _, err := execute("sync", "a/b", "c/d", "--tag-pattern", "(x"); err == nil || !strings.Contains(err.Error(), `--tag-pattern "(x"`) {
		t.Errorf("bad --tag-pattern: %v", err)
	}
	if _, err := execute("sync", "a/b", "c/d", "--all-tags", "--exclude", "rc("); err == nil || !strings.Contains(err.Error(), `--exclude "rc("`) {
		t.Errorf("bad --exclude: %v", err)
	}
	// exclude and newest, as zot and skopeo users write them: every tag but edge, the
	// newest two versions.
	out, err = execute("sync", src.Host+"/library/busybox", dst.Host+"/newest/busybox", "--all-tags", "--exclude", "edge", "--newest", "2", "--dst-ca", caFile)
	if err != nil || !strings.Contains(out, "left out: 1 excluded, 1 older than the newest 2") || !strings.Contains(out, "2 tag(s): 2 copied") ||
		!strings.Contains(out, "copied     2.0.0") || !strings.Contains(out, "copied     1.36.1") || strings.Contains(out, "1.35.0 sha256") {
		t.Errorf("--exclude edge --newest 2: %v\n%s", err, out)
	}
	if _, err := execute("sync", "a/b", "c/d", "--all-tags", "--platform", "amd64"); err == nil || !strings.Contains(err.Error(), `--platform "amd64"`) {
		t.Errorf("bad --platform: %v", err)
	}
	if _, err := execute("sync", "a/b", "c/d"); err == nil || !strings.Contains(err.Error(), "--all-tags") {
		t.Errorf("no selection: %v", err)
	}
}

// TestSyncIndexWithReferrersBetweenTLSRegistries is the shape a user checks first: a
// three-platform index with a signature between two registries that each present a
// certificate from their own private CA; a rerun reports everything up to date.
func TestSyncIndexWithReferrersBetweenTLSRegistries(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // anonymous
	srcCA := testutil.NewCA(t, "source CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	dstCA := testutil.NewCA(t, "target CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	srcCert, dstCert := srcCA.ServerTLS(t, "127.0.0.1"), dstCA.ServerTLS(t, "127.0.0.1")
	src := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: &srcCert})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: &dstCert})
	srcTransport := remote.WithTransport(testutil.CATransport(t, srcCA.PEM))

	d := testutil.PushIndex(t, src.Host+"/library/busybox:1.36", []string{"linux/amd64", "linux/arm64", "linux/ppc64le"}, 2048, 2, srcTransport)
	sig, _ := random.Image(128, 1)
	sigRef, _ := name.ParseReference(src.Host + "/library/busybox:sha256-" + d.Hex + ".sig")
	if err := remote.Write(sigRef, sig, srcTransport); err != nil {
		t.Fatal(err)
	}
	// An SBOM-like OCI referrer of the index (kept under the sha256-<hex> fallback tag: the
	// distribution registry has no referrers API).
	head, err := remote.Head(testutil.Tag(t, src.Host+"/library/busybox:1.36"), srcTransport)
	if err != nil {
		t.Fatal(err)
	}
	sbom, _ := random.Image(256, 1)
	sbom = mutate.Subject(sbom, *head).(v1.Image)
	sbomDigest, _ := sbom.Digest()
	if err := remote.Write(testutil.Digest(t, src.Host+"/library/busybox@"+sbomDigest.String()), sbom, srcTransport); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	srcCAFile, dstCAFile := filepath.Join(dir, "src.crt"), filepath.Join(dir, "dst.crt")
	for f, pem := range map[string]string{srcCAFile: srcCA.PEM, dstCAFile: dstCA.PEM} {
		if err := os.WriteFile(f, []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"sync", src.Host + "/library/busybox", dst.Host + "/my-docker/busybox", "--tags", "1.36", "--referrers", "--src-ca", srcCAFile, "--dst-ca", dstCAFile}
	out, err := execute(args...)
	if err != nil || !strings.Contains(out, "copied     1.36 "+d.String()) {
		t.Fatalf("%v\n%s", err, out)
	}
	dstTransport := remote.WithTransport(testutil.CATransport(t, dstCA.PEM))
	got, err := remote.Get(testutil.Tag(t, dst.Host+"/my-docker/busybox:1.36"), dstTransport)
	if err != nil || got.Digest != d {
		t.Fatalf("target index: %v %v, want %s", got, err, d)
	}
	if _, err := remote.Head(testutil.Tag(t, dst.Host+"/my-docker/busybox:sha256-"+d.Hex+".sig"), dstTransport); err != nil {
		t.Errorf("the signature was not copied: %v", err)
	}
	refs, err := remote.Referrers(testutil.Digest(t, dst.Host+"/my-docker/busybox@"+d.String()), dstTransport)
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := refs.IndexManifest(); len(im.Manifests) != 1 || im.Manifests[0].Digest != sbomDigest {
		t.Errorf("target referrers of the index: %+v, want %s", im.Manifests, sbomDigest)
	}
	// The rerun: three tags checked (1.36, its signature tag and its referrers fallback
	// tag), each with one manifest HEAD per side; the rest is per run: a ping per side,
	// the source's tag listing and its referrers API probe (404, then the fallback tag).
	out, err = execute(args...)
	if err != nil || !strings.Contains(out, "1 tag(s): 0 copied, 1 up to date, 0 failed") {
		t.Errorf("rerun: %v\n%s", err, out)
	}
	t.Logf("rerun:\n%s", out)
	if want := "11 requests: 6 manifest checks for 1 tag(s) and 2 referrer(s), 5 other"; !strings.Contains(out, want) {
		t.Errorf("rerun requests: want %q in\n%s", want, out)
	}
}

// TestSyncPrefixCopiesEveryRepositoryBelowItUnderTheTarget: regwire sync --prefix, as
// regsync's type: registry and zot's prefix users run it, with a repository pattern.
func TestSyncPrefixCopiesEveryRepositoryBelowItUnderTheTarget(t *testing.T) {
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	for _, repo := range []string{"team/api", "team/tools/lint", "teamwork/app"} {
		testutil.PushImage(t, src.Host+"/"+repo+":1.0", 512, 1)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	args := []string{"sync", "--prefix", src.Host + "/team", dst.Host + "/mirror", "--all-tags", "--no-blob-cache"}
	out, err := execute(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"copied     " + dst.Host + "/mirror/api:1.0", "copied     " + dst.Host + "/mirror/tools/lint:1.0",
		"2 repositories below " + src.Host + "/team, 2 tag(s): 2 copied"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "teamwork") {
		t.Errorf("copied a repository beside the prefix:\n%s", out)
	}
	if out, err = execute(args...); err != nil || !strings.Contains(out, "2 tag(s): 0 copied, 2 up to date") {
		t.Errorf("rerun: %v\n%s", err, out)
	}
	out, err = execute("sync", "--prefix", src.Host, dst.Host+"/whole", "--all-tags", "--no-blob-cache", "--repository-pattern", "team/.*")
	if err != nil || !strings.Contains(out, "copied     "+dst.Host+"/whole/team/api:1.0") || strings.Contains(out, "teamwork") {
		t.Errorf("a whole registry with a pattern: %v\n%s", err, out)
	}
	if _, err := execute("sync", "a/b", "c/d", "--all-tags", "--repository-pattern", "x"); err == nil || !strings.Contains(err.Error(), "--repository-pattern goes with --prefix") {
		t.Errorf("--repository-pattern alone: %v", err)
	}
}

// TestSyncCarriesImagesAcrossInAnOCIDirectory: a file's ImageSyncs go into one OCI image
// layout directory under their targets' paths (with SHA256SUMS), which skopeo reads, and
// from it into a registry with --prefix, digest-equal; one repository goes into a
// directory by itself with oci:PATH as the target.
func TestSyncCarriesImagesAcrossInAnOCIDirectory(t *testing.T) {
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	idx := testutil.PushIndex(t, src.Host+"/team/api:1.0", []string{"linux/amd64", "linux/arm64"}, 1024, 1)
	web := testutil.PushImage(t, src.Host+"/team/web:2.0", 1024, 2)
	webDigest, _ := web.Digest()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	work := t.TempDir()
	file := filepath.Join(work, "set.yaml")
	manifests := ""
	for _, s := range []struct{ name, src, tag, dst string }{{"api", "team/api", "1.0", "my-docker/api"}, {"web", "team/web", "2.0", "my-docker/web"}} {
		manifests += fmt.Sprintf("---\napiVersion: regwire.dev/v1alpha1\nkind: ImageSync\nmetadata: {name: %s}\nspec:\n  source: {image: %s/%s, tags: [\"%s\"]}\n  target: {image: nexus.example/%s}\n",
			s.name, src.Host, s.src, s.tag, s.dst)
	}
	if err := os.WriteFile(file, []byte(manifests), 0o600); err != nil {
		t.Fatal(err)
	}
	carry := filepath.Join(work, "carry")
	out, err := execute("sync", "-f", file, "--to", "oci:"+carry)
	if err != nil || !strings.Contains(out, "wrote "+carry+" with SHA256SUMS") || !strings.Contains(out, "2 tag(s): 2 copied") {
		t.Fatalf("sync -f --to: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(carry, "SHA256SUMS")); err != nil {
		t.Fatal(err)
	}
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		// (skopeo 1.9 reads OCI media types only from a layout: the index, not the Docker
		// schema 2 image.)
		b, err := exec.Command(skopeo, "inspect", "--raw", "oci:"+carry+":my-docker/api:1.0").CombinedOutput()
		if d, _, _ := v1.SHA256(bytes.NewReader(b)); err != nil || d != idx {
			index, _ := os.ReadFile(filepath.Join(carry, "index.json"))
			t.Errorf("skopeo inspect oci:%s:my-docker/api:1.0: %v, digest %s, want %s\n%s\nindex.json: %s", carry, err, d, idx, b, index)
		}
	}
	out, err = execute("sync", "--prefix", "oci:"+carry, dst.Host, "--all-tags")
	if err != nil || !strings.Contains(out, "2 tag(s): 2 copied") {
		t.Fatalf("sync --prefix oci:DIR: %v\n%s", err, out)
	}
	for ref, want := range map[string]v1.Hash{"my-docker/api:1.0": idx, "my-docker/web:2.0": webDigest} {
		if got, err := remote.Head(testutil.Ref(t, dst.Host+"/"+ref)); err != nil || got.Digest != want {
			t.Errorf("%s: %v %v, want %s", ref, got, err, want)
		}
	}

	one := filepath.Join(work, "one")
	if out, err := execute("sync", src.Host+"/team/web", "oci:"+one, "--all-tags"); err != nil || !strings.Contains(out, "wrote "+one) {
		t.Fatalf("sync SRC oci:DIR: %v\n%s", err, out)
	}
	if out, err := execute("sync", "oci:"+one+":team/web", dst.Host+"/back/web", "--all-tags"); err != nil || !strings.Contains(out, "1 tag(s): 1 copied") {
		t.Fatalf("sync oci:DIR:REPO DST: %v\n%s", err, out)
	}
	if _, err := execute("sync", "oci:"+one, dst.Host+"/x", "--all-tags"); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("a whole directory without --prefix: %v", err)
	}
}

// TestSignedImagesCrossOnDiskAndOnlyTheyGetIn: the air-gap path with no network beyond
// loopback. A registry's images — one signed with a key made here, one unsigned, one signed
// by another key — go to an OCI directory with --verify-key: only the signed one (and its
// signature) is written; on the far side the directory is pushed into a fresh registry,
// verified again, digest-equal; pushing an unverified directory with the key lets in only
// the signed image, with no byte of the others.
func TestSignedImagesCrossOnDiskAndOnlyTheyGetIn(t *testing.T) {
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	far := testutil.StartRegistry(t, testutil.RegistryOptions{})
	ours, theirs := testutil.NewSigningKey(t), testutil.NewSigningKey(t)
	repo := src.Host + "/library/app"
	digests := map[string]v1.Hash{}
	for _, tag := range []string{"signed", "unsigned", "other-key"} {
		img := testutil.PushImage(t, repo+":"+tag, 2048, 2)
		digests[tag], _ = img.Digest()
	}
	ours.CosignSign(t, repo, digests["signed"])
	theirs.CosignSign(t, repo, digests["other-key"])
	work := t.TempDir()
	key := filepath.Join(work, "cosign.pub")
	if err := os.WriteFile(key, ours.PublicPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())

	carry := filepath.Join(work, "carry")
	out, err := execute("sync", repo, "oci:"+carry, "--all-tags", "--verify-key", key)
	if err == nil || !strings.Contains(out, "copied     signed") || !strings.Contains(out, "SignatureNotVerified: unsigned") || !strings.Contains(out, "SignatureNotVerified: other-key") {
		t.Fatalf("to the directory with --verify-key: %v\n%s", err, out)
	}
	index, _ := os.ReadFile(filepath.Join(carry, "index.json"))
	if strings.Contains(string(index), "library/app:unsigned") || strings.Contains(string(index), "library/app:other-key") ||
		!strings.Contains(string(index), "library/app:sha256-"+digests["signed"].Hex+".sig") {
		t.Errorf("the directory's index.json:\n%s", index)
	}
	out, err = execute("sync", "--prefix", "oci:"+carry, far.Host, "--all-tags", "--verify-key", key)
	if err != nil || !strings.Contains(out, "1 tag(s): 1 copied") {
		t.Fatalf("from the directory with --verify-key: %v\n%s", err, out)
	}
	if got, err := remote.Head(testutil.Ref(t, far.Host+"/library/app:signed")); err != nil || got.Digest != digests["signed"] {
		t.Errorf("the signed image on the far side: %v %v, want %s", got, err, digests["signed"])
	}

	// A directory made without verification carries all three: the key lets one in.
	all := filepath.Join(work, "all")
	if out, err := execute("sync", repo, "oci:"+all, "--all-tags"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	fresh := testutil.StartRegistry(t, testutil.RegistryOptions{})
	out, err = execute("sync", "oci:"+all+":library/app", fresh.Host+"/library/app", "--all-tags", "--verify-key", key)
	if err == nil || !strings.Contains(out, "copied     signed") || !strings.Contains(err.Error(), "2 tag(s) failed") {
		t.Fatalf("an unverified directory in with --verify-key: %v\n%s", err, out)
	}
	for _, tag := range []string{"unsigned", "other-key"} {
		if _, err := remote.Head(testutil.Ref(t, fresh.Host+"/library/app:"+tag)); err == nil {
			t.Errorf("%s got in", tag)
		}
		img, _ := remote.Image(testutil.Ref(t, repo+":"+tag))
		layers, _ := img.Layers()
		for _, l := range layers {
			d, _ := l.Digest()
			resp, err := http.Head(fresh.URL + "/v2/library/app/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("a layer of %s is in the registry", tag)
			}
		}
	}
}
