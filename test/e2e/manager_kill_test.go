//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestTheManagerKilledDuringSyncsConverges SIGKILLs the manager process 20 times at random
// points while ImageSyncs copy 8 repositories × 3 tags (a shared base layer, images and
// multi-platform indexes) through a slow source, restarting it each time. Once a manager
// runs undisturbed, every ImageSync must be Ready with every tag digest-equal to the
// source, no copy left "in progress" in status, every manifest in the target complete
// (each blob it names is there), and the RegistryMirror's pull secrets in place.
func TestTheManagerKilledDuringSyncsConverges(t *testing.T) {
	ctx := context.Background()
	l := newLogs(t)
	work := t.TempDir()
	regwire := buildRegwire(t, work)
	_, kubeconfig, k8s := startControlPlane(t, work, controlplane.Options{})

	source := testutil.StartRegistry(t, testutil.RegistryOptions{})
	target := testutil.StartRegistry(t, testutil.RegistryOptions{})
	l.add("registry source", source.Log)
	l.add("registry target", target.Log)
	// Both sides through proxies that count requests in flight (so we know a kill landed
	// during a sync); the source sends blobs slowly (~3 MB/s a stream).
	srcProxy, srcInFlight := countingProxy(t, source.URL, true)
	dstProxy, dstInFlight := countingProxy(t, target.URL, false)

	// The images: 8 repositories × 3 tags; a 3 MiB base layer in all of them, two 384 KiB
	// layers of their own; every third tag an index of two such images.
	base, err := random.Layer(3<<20, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	const repos = 8
	tags := []string{"1.0", "1.1", "2.0"}
	want := map[string]v1.Hash{} // repo:tag → source digest
	for r := range repos {
		repo := fmt.Sprintf("team/app%d", r)
		for i, tag := range tags {
			ref := testutil.Ref(t, source.Host+"/"+repo+":"+tag)
			img := imageOnBase(t, base)
			if i == 2 {
				idx := mutate.AppendManifests(empty.Index,
					mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
					mutate.IndexAddendum{Add: imageOnBase(t, base), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
				if err := remote.WriteIndex(ref, idx); err != nil {
					t.Fatal(err)
				}
				want[repo+":"+tag], _ = idx.Digest()
				continue
			}
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			want[repo+":"+tag], _ = img.Digest()
		}
	}

	// The objects: a RegistryMirror with pull secrets in three namespaces, and the ImageSyncs.
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "creds"}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"username": "puller", "password": "kill-test-password"}},
	}
	for i := range 3 {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("apps-%d", i), Labels: map[string]string{"pull": "yes"}}})
	}
	objs = append(objs, &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "mirror"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host:                 "registry.example:5000",
			CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: operatorNS, Name: "creds"},
			PullSecrets: &v1alpha1.PullSecretsSpec{SecretName: "mirror-pull",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pull": "yes"}}},
		},
	})
	for r := range repos {
		repo := fmt.Sprintf("team/app%d", r)
		objs = append(objs, &v1alpha1.ImageSync{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps-0", Name: fmt.Sprintf("app%d", r)},
			Spec: v1alpha1.ImageSyncSpec{
				Source:   v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(srcProxy + "/" + repo), Tags: tags},
				Target:   v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dstProxy + "/mirror/" + repo)},
				Interval: &metav1.Duration{Duration: time.Hour},
			},
		})
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// 20 kills, each 0.3–2.5 s after the manager started.
	env := []string{"KUBECONFIG=" + kubeconfig}
	args := []string{"manager", "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--namespace", operatorNS,
		"--allow-source-cidrs=127.0.0.1/32"} // the source registries listen on loopback
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	midSync := 0
	for i := range 20 {
		cmd := startKillable(t, l, fmt.Sprintf("manager (run %d)", i+1), env, regwire, args...)
		time.Sleep(300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond))))
		inflight := srcInFlight.Load() + dstInFlight.Load()
		if inflight > 0 {
			midSync++
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	t.Logf("20 SIGKILLs, %d of them with registry requests in flight", midSync)
	if midSync < 10 {
		t.Errorf("only %d of the 20 kills landed during a sync; the test wants at least 10 to mean anything", midSync)
	}

	// An undisturbed manager: everything converges.
	start(t, l, "manager (final)", env, regwire, args...)
	testutil.Eventually(t, 3*time.Minute, "every ImageSync Ready and the pull secrets in place", func() error {
		list := &v1alpha1.ImageSyncList{}
		if err := k8s.List(ctx, list); err != nil {
			return err
		}
		var notReady []string
		for _, is := range list.Items {
			c := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || is.Status.ObservedGeneration != is.Generation {
				notReady = append(notReady, fmt.Sprintf("%s: %+v", is.Name, c))
			}
		}
		if len(notReady) > 0 {
			return fmt.Errorf("not Ready: %s", strings.Join(notReady, "; "))
		}
		for i := range 3 {
			s := &corev1.Secret{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: fmt.Sprintf("apps-%d", i), Name: "mirror-pull"}, s); err != nil {
				return err
			}
			if !strings.Contains(string(s.Data[corev1.DockerConfigJsonKey]), "registry.example:5000") {
				return fmt.Errorf("pull secret in apps-%d: %s", i, s.Data[corev1.DockerConfigJsonKey])
			}
		}
		return nil
	})

	// Nothing corrupt: status agrees with both registries, and every manifest is complete.
	list := &v1alpha1.ImageSyncList{}
	if err := k8s.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	for _, is := range list.Items {
		repo := strings.TrimPrefix(string(is.Spec.Source.Image), srcProxy+"/")
		if len(is.Status.Images) != len(tags) {
			t.Errorf("%s: status has %d images, want %d", is.Name, len(is.Status.Images), len(tags))
		}
		for _, img := range is.Status.Images {
			w := want[repo+":"+img.Tag]
			if img.Copying != nil || img.Error != "" || img.SourceDigest != w.String() || img.TargetDigest != w.String() {
				t.Errorf("%s:%s status %+v, want source and target %s, nothing copying, no error", is.Name, img.Tag, img, w)
			}
		}
	}
	checked := 0
	for key, w := range want {
		ref := testutil.Ref(t, target.Host+"/mirror/"+key)
		desc, err := remote.Get(ref)
		if err != nil {
			t.Errorf("target %s: %v", key, err)
			continue
		}
		if desc.Digest != w {
			t.Errorf("target %s is %s, source %s", key, desc.Digest, w)
		}
		checked += assertComplete(t, ref.Context(), desc)
	}
	t.Logf("%d tags digest-equal, %d blobs and manifests read back from the target", len(want), checked)
}

// imageOnBase is an image of base and two small layers of its own.
func imageOnBase(t *testing.T, base v1.Layer) v1.Image {
	t.Helper()
	own, err := random.Image(384<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, base)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := own.Layers()
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// assertComplete checks that every blob and child manifest desc names is in repo; it
// returns how many it checked.
func assertComplete(t *testing.T, repo name.Repository, desc *remote.Descriptor) int {
	t.Helper()
	n := 0
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Errorf("%s@%s: %v", repo, desc.Digest, err)
			return 0
		}
		im, _ := idx.IndexManifest()
		for _, m := range im.Manifests {
			child, err := remote.Get(repo.Digest(m.Digest.String()))
			if err != nil {
				t.Errorf("%s: child %s missing: %v", repo, m.Digest, err)
				continue
			}
			n += 1 + assertComplete(t, repo, child)
		}
		return n
	}
	img, err := desc.Image()
	if err != nil {
		t.Errorf("%s@%s: %v", repo, desc.Digest, err)
		return 0
	}
	m, _ := img.Manifest()
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		l, err := remote.Layer(repo.Digest(d.Digest.String()))
		if err != nil {
			t.Errorf("%s: blob %s: %v", repo, d.Digest, err)
			continue
		}
		if _, err := l.Size(); err != nil { // a HEAD: the blob is there
			t.Errorf("%s: blob %s missing: %v", repo, d.Digest, err)
			continue
		}
		n++
	}
	return n
}

// countingProxy is a reverse proxy to upstream that counts requests in flight; slowBlobs
// sends blob bodies slowly.
func countingProxy(t *testing.T, upstream string, slowBlobs bool) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // killed clients break connections all the time
	inflight := &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		if slowBlobs && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			w = &testutil.SlowWriter{ResponseWriter: w, Pause: 20 * time.Millisecond} // ~3 MB/s
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), inflight
}

// startKillable starts a process in its own process group, its output in the logs under
// name; the caller kills it, and the test's end kills it if it is still running.
func startKillable(t *testing.T, l *logs, name string, env []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = l.buffer(name), l.buffer(name)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	return cmd
}
