//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/test/testutil"
)

// keepsTheImagesPodsRun: the mirror keeps images in use of namespace apps from an upstream
// registry, in Nexus's hosted repository "kept" (path routing, anonymous read, as for
// Docker Hub through Nexus). A pod runs an upstream image nobody wrote an ImageSync for;
// regwire copies it into Nexus; the upstream stops, the image leaves the node, and a new pod
// of the same image still starts — from the mirror, which Nexus's log shows.
func keepsTheImagesPodsRun(t *testing.T, k8s client.Client, rm *v1alpha1.RegistryMirror, priv *privateRegistry, ctrd *containerd,
	upstream *testutil.Registry, image, line, podLogs string) {
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	c, err := nexus.New(priv.url, "admin", priv.password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureDockerHosted(ctx, &nexus.DockerHostedRepository{
		Name: "kept", Online: true,
		Storage: nexus.HostedStorage{BlobStoreName: "default", StrictContentTypeValidation: true, WritePolicy: nexus.WritePolicyAllow},
		Docker:  nexus.Docker{PathEnabled: new(true)},
	}); err != nil {
		t.Fatal(err)
	}
	priv.nexus.ActivateRealm("DockerToken")
	priv.nexus.AllowAnonymous(true)

	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
		t.Fatal(err)
	}
	rm.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: v1alpha1.UpstreamHost(upstream.Host), Path: "/v2/kept"}}
	rm.Spec.ImagesInUse = &v1alpha1.ImagesInUseSpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"regwire.dev/pull-from-nexus": "true"}}}
	if err := k8s.Update(ctx, rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, rm.Name)

	run := func(name string) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
			Spec: corev1.PodSpec{HostNetwork: true, Tolerations: []corev1.Toleration{notReady},
				Containers: []corev1.Container{{Name: "world", Image: image}}},
		}
		testutil.Eventually(t, time.Minute, "creating pod "+name, func() error { return k8s.Create(ctx, pod.DeepCopy()) })
		testutil.Eventually(t, 3*time.Minute, "pod "+name+" Running", func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return err
			}
			if pod.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s: %+v", pod.Status.Phase, pod.Status.ContainerStatuses)
			}
			return nil
		})
		if got := podLogLine(t, podLogs, "apps", name); got != line {
			t.Fatalf("pod %s's log says %q, want %q", name, got, line)
		}
	}
	run("world")
	testutil.Eventually(t, 2*time.Minute, "the image in use at the mirror", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
			return err
		}
		if st := rm.Status.ImagesInUse; st == nil || st.Images != 1 || st.AtMirror != 1 {
			return fmt.Errorf("status.imagesInUse %+v", st)
		}
		return nil
	})
	if w := priv.nexus.Writers("kept"); len(w) == 0 {
		t.Fatalf("nobody wrote to Nexus's kept repository, yet status says the image is there")
	}
	t.Logf("%s, run by pod apps/world, is in Nexus's kept repository after %s (no ImageSync)", image, time.Since(began).Round(time.Second))

	// The upstream goes away, and so does the image on the node: a new pod pulls it again.
	upstream.Stop()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "world"}}
	if err := k8s.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, "pod apps/world gone", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%w)", err)
		}
		return nil
	})
	testutil.Eventually(t, time.Minute, "the image removed from the node", func() error { return ctrd.tryRemove(image) })
	before := len(priv.nexus.Requests())
	run("world-again")
	var fromMirror bool
	for _, r := range priv.nexus.Requests()[before:] {
		if strings.Contains(r, "/v2/kept/library/world/manifests/") || strings.Contains(r, "/v2/kept/library/world/blobs/") {
			fromMirror = true
		}
	}
	if !fromMirror {
		t.Fatalf("pod apps/world-again started, but Nexus served nothing of the image:\n%s", strings.Join(priv.nexus.Requests()[before:], "\n"))
	}
	t.Logf("with the upstream stopped, pod apps/world-again pulled %s from the mirror and runs (%s)", image, time.Since(began).Round(time.Second))
	_ = k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "world-again"}})
}
