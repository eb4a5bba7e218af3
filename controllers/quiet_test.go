package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/registrymirror"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/testutil"
)

// TestAnUnchangedMirrorWritesNothing: once a RegistryMirror has settled, reconciling it
// again (here: node label changes, which reconcile every mirror) writes nothing — not its
// status, not the published ConfigMap, not the agent DaemonSet (whose defaulted fields
// always differ from what regwire asks for, so it is compared by hash).
func TestAnUnchangedMirrorWritesNothing(t *testing.T) {
	ctx := context.Background()
	rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, Spec: v1alpha1.RegistryMirrorSpec{
		Host: "quiet.example:5000", NodeSelector: map[string]string{"regwire.test/quiet": "never"},
	}}
	if err := k8s.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWait(t, rm) })
	ds := &appsv1.DaemonSet{}
	cm := &corev1.ConfigMap{}
	versions := func() string {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(rm), rm)
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: registrymirror.AgentDaemonSetName}, ds)
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: nodeconfig.PublishedName(rm.Name)}, cm)
		return fmt.Sprintf("mirror %s, DaemonSet %s, ConfigMap %s", rm.ResourceVersion, ds.ResourceVersion, cm.ResourceVersion)
	}
	eventually(t, func() error {
		if rm.Status.ObservedGeneration != rm.Generation || ds.ResourceVersion == "" || cm.ResourceVersion == "" {
			return fmt.Errorf("not settled: %s", versions())
		}
		return nil
	})
	time.Sleep(time.Second) // the last status write of the first reconciles
	before := versions()
	reconciles := reconcileCount(t, "registrymirror")
	writes := testutil.APIWrites(t, restConfig)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "quiet-node"}}
	if err := k8s.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
	for i := range 5 {
		update(t, node, func() { node.Labels = map[string]string{"round": fmt.Sprint(i)} })
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := reconcileCount(t, "registrymirror") - reconciles; n < 5 {
		t.Fatalf("only %v reconciles of RegistryMirrors; the test wants them to happen", n)
	}
	if after := versions(); after != before {
		t.Errorf("reconciling an unchanged mirror changed objects: before %s, after %s", before, after)
	}
	// A write that changes nothing keeps the resource version; the API server still counts
	// the request.
	for resource, n := range testutil.APIWrites(t, restConfig) {
		if d := n - writes[resource]; d > 0 && resource != "leases" && resource != "nodes" && resource != "events" {
			t.Errorf("%v write request(s) to %s while nothing changed", d, resource)
		}
	}
}

// reconcileCount is controller-runtime's count of reconciles of the named controller
// ("registrymirror", "imagesync") so far.
func reconcileCount(t *testing.T, controller string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// waitForReconcile waits until the named controller has reconciled since it counted before.
func waitForReconcile(t *testing.T, controller string, before float64) {
	t.Helper()
	eventually(t, func() error {
		if n := reconcileCount(t, controller); n <= before {
			return fmt.Errorf("no %s reconcile since the change (%v so far)", controller, n)
		}
		return nil
	})
}
