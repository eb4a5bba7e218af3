package inuse_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestTheImagesPodsRunAreCopiedToTheMirrorWhereNodesAskForThem: a mirror of an upstream
// registry (at /v2/kept, as nodes reach a Nexus hosted repository by path routing) keeps the images Pods of a labelled namespace run — a container's by tag, an
// init container's by digest, an ephemeral container's — each at the path nodes ask for
// it there, digest-equal; it leaves alone a Pod of another namespace and an image of a
// registry it does not mirror; an image the upstream lacks is reported with its reason,
// once as an Event.
func TestTheImagesPodsRunAreCopiedToTheMirrorWhereNodesAskForThem(t *testing.T) {
	ctx := context.Background()
	upstream := testutil.StartRegistry(t, testutil.RegistryOptions{})
	mirror := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushImage(t, upstream.Host+"/library/app:1.0", 512, 2)
	tools := testutil.PushImage(t, upstream.Host+"/tools:2", 512, 1)
	toolsDigest, _ := tools.Digest()
	testutil.PushImage(t, upstream.Host+"/debug:1", 256, 1)
	testutil.PushImage(t, upstream.Host+"/elsewhere:1", 256, 1)
	// Pods name the upstream through a proxy that counts what is asked of the missing image.
	var askedMissing atomic.Int64
	proxy := testutil.StartHostile(t, upstream, func(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/library/missing/") {
			askedMissing.Add(1)
		}
		return false
	})
	source := proxy.Host()

	rm := env.NewMirror(t, "keeps-images", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = v1alpha1.RegistryHost(mirror.Host)
		rm.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: v1alpha1.UpstreamHost(source), Path: "/v2/kept"}}
		rm.Spec.ImagesInUse = &v1alpha1.ImagesInUseSpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"keep-images": "true"}}}
	})
	env.CreateNamespace(t, "inuse-apps", map[string]string{"keep-images": "true"})
	env.CreateNamespace(t, "inuse-other", nil)
	pod := func(ns, name string, init, main string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "main", Image: main}}}}
		if init != "" {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: init}}
		}
		if err := env.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Delete(context.Background(), p) })
		return p
	}
	app := pod("inuse-apps", "app", source+"/tools@"+toolsDigest.String(), source+"/library/app:1.0")
	pod("inuse-apps", "not-mirrored", "", "registry.invalid/library/busybox:1.36")
	pod("inuse-other", "elsewhere", "", source+"/elsewhere:1")
	// An ephemeral container, as kubectl debug adds one.
	app.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: source + "/debug:1"}}}
	if err := env.SubResource("ephemeralcontainers").Update(ctx, app); err != nil {
		t.Fatal(err)
	}

	status := func(want v1alpha1.ImagesInUseStatus) {
		t.Helper()
		envtest.Eventually(t, func() error {
			if err := env.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
				return err
			}
			got := rm.Status.ImagesInUse
			if got == nil || got.Images != want.Images || got.AtMirror != want.AtMirror || len(got.Failing) != len(want.Failing) {
				return fmt.Errorf("status.imagesInUse %+v, want %+v", got, want)
			}
			for i := range want.Failing {
				if got.Failing[i].Image != want.Failing[i].Image || !strings.Contains(got.Failing[i].Message, want.Failing[i].Message) {
					return fmt.Errorf("failing %+v, want %+v", got.Failing, want.Failing)
				}
			}
			return nil
		})
	}
	status(v1alpha1.ImagesInUseStatus{Images: 3, AtMirror: 3})
	for _, ref := range []string{"/library/app:1.0", "/tools@" + toolsDigest.String(), "/debug:1"} {
		up, err := remote.Head(testutil.Ref(t, upstream.Host+ref))
		if err != nil {
			t.Fatal(err)
		}
		at, err := remote.Head(testutil.Ref(t, mirror.Host+"/kept"+ref))
		if err != nil || at.Digest != up.Digest {
			t.Errorf("the mirror's kept%s: %v %v, want %s", ref, at, err, up.Digest)
		}
	}
	if _, err := remote.Head(testutil.Ref(t, mirror.Host+"/kept/elsewhere:1")); err == nil {
		t.Error("the image of a namespace the mirror does not select was copied")
	}

	missing := source + "/library/missing:1"
	pod("inuse-apps", "missing", "", missing)
	status(v1alpha1.ImagesInUseStatus{Images: 4, AtMirror: 3, Failing: []v1alpha1.ImageInUseFailure{{Image: missing, Message: "Not Found"}}})
	envtest.Eventually(t, func() error { return env.HasEvent(rm, v1alpha1.ConditionReason(v1alpha1.ReasonImageInUseNotMirrored)) })
	// Tried again after a backoff, not in a loop: more Pods of other images meanwhile bring
	// the mirror back, and ask nothing more of the missing image.
	asked := askedMissing.Load()
	if asked == 0 {
		t.Fatal("the missing image was never asked for")
	}
	for i := range 3 {
		pod("inuse-apps", fmt.Sprintf("again-%d", i), "", source+"/library/app:1.0")
		time.Sleep(500 * time.Millisecond)
	}
	if now := askedMissing.Load(); now != asked {
		t.Errorf("the missing image was asked for %d more times within 2 s of failing: a hot loop", now-asked)
	}
	if err := env.HasEvent(rm, v1alpha1.ConditionReason(v1alpha1.ReasonImageInUseMirrored)); err != nil {
		t.Error(err)
	}
}
