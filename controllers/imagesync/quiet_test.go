package imagesync_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
)

// TestAMirrorsStatusChurnDoesNotWakeItsImageSyncs: the node counts a RegistryMirror writes
// all the time do not bring back the ImageSyncs that target it (at 10,000 ImageSyncs that
// would be 10,000 reconciles per report); a change of its Provisioned condition does.
func TestAMirrorsStatusChurnDoesNotWakeItsImageSyncs(t *testing.T) {
	ctx := context.Background()
	rm := env.NewMirror(t, "churning", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.NodeSelector = map[string]string{"regwire.test/churning": "none"}
	})
	newSync(t, "sleeper", func(is *v1alpha1.ImageSync) {
		is.Spec.Suspend = true
		is.Spec.Target = v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/sleeper"}
	})
	envtest.Eventually(t, func() error {
		is := &v1alpha1.ImageSync{}
		if err := env.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "sleeper"}, is); err != nil {
			return err
		}
		if is.Status.ObservedGeneration != is.Generation {
			return fmt.Errorf("not reconciled yet")
		}
		return env.Get(ctx, client.ObjectKeyFromObject(rm), rm)
	})
	time.Sleep(time.Second) // the last writes of the first reconciles
	patchStatus := func(mutate func()) {
		t.Helper()
		if err := env.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
			t.Fatal(err)
		}
		before := rm.DeepCopy()
		mutate()
		if err := env.Status().Patch(ctx, rm, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	reconciles := envtest.ReconcileCount(t, "imagesync")
	for i := range 5 {
		patchStatus(func() {
			rm.Status.Nodes = &v1alpha1.NodesStatus{Desired: int32(i + 1), Summary: fmt.Sprintf("0/%d", i+1)}
		})
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := envtest.ReconcileCount(t, "imagesync") - reconciles; n != 0 {
		t.Errorf("%v ImageSync reconciles after 5 node-count writes to their mirror, want 0", n)
	}
	// What an ImageSync reads of its mirror's status does bring it back.
	patchStatus(func() {
		apimeta.SetStatusCondition(&rm.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionProvisioned, Status: metav1.ConditionFalse,
			Reason: string(v1alpha1.ReasonNexusUnreachable), Message: "test", ObservedGeneration: rm.Generation})
	})
	envtest.WaitForReconcile(t, "imagesync", reconciles)
}
