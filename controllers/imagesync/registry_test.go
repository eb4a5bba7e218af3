package imagesync_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestImageSyncCopiesIntoARegistryMirror runs the whole path on real registries: an
// ImageSync copies a multi-platform index and an image from a source registry into the
// repository of a RegistryMirror whose registry wants TLS (private CA) and basic auth.
func TestImageSyncCopiesIntoARegistryMirror(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "imagesync CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	cert := ca.ServerTLS(t, "127.0.0.1")
	target := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: &cert, Users: map[string]string{"pusher": "push-password"}})
	source := testutil.StartRegistry(t, testutil.RegistryOptions{})

	want := map[string]v1.Hash{}
	want["1.0"] = testutil.PushIndex(t, source.Host+"/library/app:1.0", []string{"linux/amd64", "linux/arm64"}, 1024, 2)
	img, _ := random.Image(1024, 1)
	ref, _ := name.ParseReference(source.Host + "/library/app:latest")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	want["latest"], _ = img.Digest()

	creds := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "target-push"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "pusher", "password": "push-password"},
	}
	if err := env.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	rm := env.NewMirror(t, "sync-target", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = v1alpha1.RegistryHost(target.Host)
		rm.Spec.CABundle = ca.PEM
		rm.Spec.CredentialsSecretRef = &v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: creds.Name}
		rm.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{Repositories: []v1alpha1.RepositoryPattern{"my-docker/**"}}
	})
	newSync(t, "app", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host + "/library/app"), Tags: []string{"latest"}, Semver: "^1"}
		is.Spec.Target = v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/app"}
	})
	is := syncReady(t, "app")
	if is.Status.TagsSummary != "2/2" || is.Status.LastSyncTime == nil || is.Status.NextSyncTime == nil {
		t.Errorf("status: tags %q, lastSyncTime %v, nextSyncTime %v", is.Status.TagsSummary, is.Status.LastSyncTime, is.Status.NextSyncTime)
	}
	for _, im := range is.Status.Images {
		if im.SourceDigest != want[im.Tag].String() || im.TargetDigest != im.SourceDigest || im.SyncedAt == nil || im.Error != "" || im.Bytes == 0 {
			t.Errorf("status.images %+v, want digest %s", im, want[im.Tag])
		}
	}
	// What the target registry holds, read with the mirror's CA and credentials.
	tr := testutil.CATransport(t, ca.PEM)
	for tag, d := range want {
		ref, _ := name.ParseReference(target.Host + "/my-docker/app:" + tag)
		desc, err := remote.Head(ref, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "pusher", Password: "push-password"}))
		if err != nil || desc.Digest != d {
			t.Errorf("target %s: %v %v, want %s", tag, desc, err, d)
		}
	}

	// exclude and newest: of 1.0, 1.1, 1.2, 2.0 and latest, every tag but 2.0, the newest
	// two versions — status says what was left out, in counts.
	for _, tag := range []string{"1.1", "1.2", "2.0"} {
		img, _ := random.Image(256, 1)
		r, _ := name.ParseReference(source.Host + "/library/app:" + tag)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
	}
	newSync(t, "app-newest", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host + "/library/app"), TagPattern: ".*", Exclude: `2\..*`, Newest: 2}
		is.Spec.Target = v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/app-newest"}
	})
	newest := syncReady(t, "app-newest")
	var copied []string
	for _, im := range newest.Status.Images {
		copied = append(copied, im.Tag)
	}
	slices.Sort(copied)
	synced := apimeta.FindStatusCondition(newest.Status.Conditions, v1alpha1.ConditionSynced)
	if !slices.Equal(copied, []string{"1.1", "1.2"}) || newest.Status.TagsLeftOut == nil ||
		*newest.Status.TagsLeftOut != (v1alpha1.TagsLeftOut{Excluded: 1, Older: 1, NotVersions: 1}) ||
		synced == nil || !strings.Contains(synced.Message, "left out: 1 excluded, 1 older than the newest 2, 1 not versions") {
		t.Errorf("exclude 2.x, newest 2: copied %v, tagsLeftOut %+v, Synced %+v", copied, newest.Status.TagsLeftOut, synced)
	}

	// spec.platforms narrows the index: a new digest in the target, reported as such.
	newSync(t, "app-amd64", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host + "/library/app"), Tags: []string{"1.0"}}
		is.Spec.Target = v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/app-amd64"}
		is.Spec.Platforms = []v1alpha1.Platform{"linux/amd64"}
	})
	narrow := syncReady(t, "app-amd64")
	if len(narrow.Status.Images) != 1 || narrow.Status.Images[0].SourceDigest != want["1.0"].String() || narrow.Status.Images[0].TargetDigest == want["1.0"].String() {
		t.Errorf("filtered status.images = %+v", narrow.Status.Images)
	}
	ref, _ = name.ParseReference(target.Host + "/my-docker/app-amd64:1.0")
	if desc, err := remote.Get(ref, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "pusher", Password: "push-password"})); err != nil {
		t.Error(err)
	} else if idx, err := desc.ImageIndex(); err != nil {
		t.Error(err)
	} else if im, _ := idx.IndexManifest(); len(im.Manifests) != 1 || im.Manifests[0].Platform.Architecture != "amd64" {
		t.Errorf("filtered target index: %+v", im.Manifests)
	}

	// A reconcile with nothing to do leaves the object as it was: no status churn such as a
	// recomputed nextSyncTime. (That it sends no request at all is unit-tested in
	// TestPatchStatusSendsNothingWhenNothingChanged: the API server would not bump the
	// resourceVersion for an empty patch either.)
	rv := is.ResourceVersion
	if err := env.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
		t.Fatal(err)
	}
	// A metadata-only change: it triggers a reconcile but not a new generation. (A typed
	// Update would send spec.interval back as "1h0m0s" where "1h" is stored: a new generation.)
	poke := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"poke":"1"}}}`))
	reconciles := envtest.ReconcileCount(t, "imagesync")
	if err := env.Patch(ctx, is, poke); err != nil {
		t.Fatal(err)
	}
	poked := is.ResourceVersion
	pokedStatus := is.Status.DeepCopy()
	envtest.WaitForReconcile(t, "imagesync", reconciles)
	time.Sleep(200 * time.Millisecond) // a status patch under way would land now
	if err := env.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
		t.Fatal(err)
	}
	if is.ResourceVersion != poked {
		t.Errorf("a no-op reconcile wrote the object (resourceVersion %s -> %s, before the poke %s):\n%+v\n%+v", poked, is.ResourceVersion, rv, *pokedStatus, is.Status)
	}

	// Changing the tags is a new generation: it syncs again and the status follows.
	env.Mutate(t, is, func() {
		is.Spec.Source.Semver = ""
	})
	envtest.Eventually(t, func() error {
		got := &v1alpha1.ImageSync{}
		if err := env.Get(ctx, client.ObjectKeyFromObject(is), got); err != nil {
			return err
		}
		s := apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSynced)
		if s == nil || s.ObservedGeneration != got.Generation || s.Status != metav1.ConditionTrue || got.Status.TagsSummary != "1/1" || len(got.Status.Images) != 1 {
			return fmt.Errorf("after the tag change: %s, synced %+v, images %+v", got.Status.TagsSummary, s, got.Status.Images)
		}
		return nil
	})

	// Suspending says so and schedules nothing.
	env.Mutate(t, is, func() {
		is.Spec.Suspend = true
	})
	suspended, _ := syncCondition(t, "app", v1alpha1.ConditionSynced, v1alpha1.ReasonSuspended)
	if suspended.Status.NextSyncTime != nil || len(suspended.Status.Images) != 1 {
		t.Errorf("suspended: nextSyncTime %v, images %+v (the last results stay)", suspended.Status.NextSyncTime, suspended.Status.Images)
	}

	// Wrong target credentials: the reason names the target's authentication.
	env.Mutate(t, creds, func() {
		creds.Data = map[string][]byte{"username": []byte("pusher"), "password": []byte("wrong")}
	})
	newSync(t, "app-bad-auth", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host + "/library/app"), Tags: []string{"latest"}}
		is.Spec.Target = v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/other"}
	})
	_, c := syncCondition(t, "app-bad-auth", v1alpha1.ConditionReady, v1alpha1.ReasonTargetAuthFailed)
	if strings.Contains(c.Message, "wrong") {
		t.Errorf("the condition leaks the password: %s", c.Message)
	}
}

// syncReady waits for an ImageSync to be Ready.
func syncReady(t *testing.T, name string) *v1alpha1.ImageSync {
	t.Helper()
	is := &v1alpha1.ImageSync{}
	envtest.Eventually(t, func() error {
		if err := env.Get(context.Background(), client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: name}, is); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("Ready = %+v; images %+v", c, is.Status.Images)
		}
		return nil
	})
	return is
}

// TestALongCopyStarvesNoOneAndStopsWhenDeleted holds one ImageSync's copy on a source that
// answers blob requests only when the request is cancelled, checks that another ImageSync
// completes meanwhile, then deletes the held one and checks that its copy is cancelled.
func TestALongCopyStarvesNoOneAndStopsWhenDeleted(t *testing.T) {
	ctx := context.Background()
	source := testutil.StartRegistry(t, testutil.RegistryOptions{})
	target := testutil.StartRegistry(t, testutil.RegistryOptions{})
	for _, repo := range []string{"slow/app", "fast/app"} {
		img, _ := random.Image(1024, 1)
		ref, _ := name.ParseReference(source.Host + "/" + repo + ":1.0")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	// The slow source: blob downloads hang until the client gives up.
	held, released := make(chan struct{}, 16), make(chan struct{}, 16)
	u, _ := url.Parse(source.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			held <- struct{}{}
			<-r.Context().Done()
			released <- struct{}{}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer slow.Close()

	newSync(t, "held", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(slow.Listener.Addr().String() + "/slow/app"), Tags: []string{"1.0"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(target.Host + "/slow/app")}
	})
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the held copy never reached the source's blobs")
	}
	newSync(t, "quick", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(source.Host + "/fast/app"), Tags: []string{"1.0"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(target.Host + "/fast/app")}
	})
	syncReady(t, "quick") // completes while the held copy still runs

	held1 := &v1alpha1.ImageSync{}
	if err := env.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "held"}, held1); err != nil {
		t.Fatal(err)
	}
	if c := apimeta.FindStatusCondition(held1.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Reason != string(v1alpha1.ReasonSyncing) {
		t.Errorf("the held ImageSync is %+v, want Syncing", c)
	}
	if err := env.Delete(ctx, held1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("deleting the ImageSync did not cancel its copy")
	}
}

// TestStatusShowsTheProgressOfACopyUnderWay copies a 2 MiB layer from a source that sends
// blobs slowly: while the copy runs, status.images shows the tag's bytes done of the total,
// moving; when it ends, the progress is gone and the tag is synced.
func TestStatusShowsTheProgressOfACopyUnderWay(t *testing.T) {
	ctx := context.Background()
	source := testutil.StartRegistry(t, testutil.RegistryOptions{})
	target := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img, _ := random.Image(2<<20, 1)
	ref, _ := name.ParseReference(source.Host + "/big/app:1.0")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	// The slow source: blobs in 64 KiB pieces, 60 ms apart (about two seconds per MiB).
	u, _ := url.Parse(source.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			proxy.ServeHTTP(&testutil.SlowWriter{ResponseWriter: w, Pause: 60 * time.Millisecond}, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer slow.Close()

	newSync(t, "progress", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(slow.Listener.Addr().String() + "/big/app"), Tags: []string{"1.0"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(target.Host + "/big/app")}
	})
	var seen []v1alpha1.CopyProgress
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		is := &v1alpha1.ImageSync{}
		if err := env.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "progress"}, is); err != nil {
			t.Fatal(err)
		}
		if apimeta.IsStatusConditionTrue(is.Status.Conditions, v1alpha1.ConditionReady) {
			if len(is.Status.Images) != 1 || is.Status.Images[0].Copying != nil || is.Status.Images[0].SyncedAt == nil {
				t.Errorf("after the copy: %+v", is.Status.Images)
			}
			break
		}
		if len(is.Status.Images) == 1 && is.Status.Images[0].Copying != nil {
			p := *is.Status.Images[0].Copying
			if len(seen) == 0 || seen[len(seen)-1] != p {
				seen = append(seen, p)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	moving := 0
	for i, p := range seen {
		if p.CompletedBytes > p.TotalBytes || p.TotalBytes < 2<<20 {
			t.Errorf("progress %+v: want at most the total, and a total of at least the 2 MiB layer", p)
		}
		if i > 0 && p.CompletedBytes > seen[i-1].CompletedBytes {
			moving++
		}
	}
	if moving < 2 {
		t.Errorf("status showed progress %+v; want it to move at least twice during the copy", seen)
	}
}
