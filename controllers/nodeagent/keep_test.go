package nodeagent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/envtest"
)

// TestAnUnsafePublishedMirrorKeepsTheLastGoodFiles feeds an agent a published mirror by
// hand (in a namespace no controller publishes to), then an unsafe version of it, as an
// object written before a stricter CRD might be: the node refuses it, says why, and keeps
// the files and hosts entries it had.
func TestAnUnsafePublishedMirrorKeepsTheLastGoodFiles(t *testing.T) {
	ctx := context.Background()
	const ns = "hand-published"
	env.CreateNamespace(t, ns, nil)
	n := env.StartNodeIn(t, ns, "node-keep", nil, nil)

	publish := func(spec v1alpha1.RegistryMirrorSpec) {
		t.Helper()
		rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "kept", Generation: 1}, Spec: spec}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept", Labels: map[string]string{nodeconfig.PublishedLabel: "true"}}}
		_, err := controllerutil.CreateOrUpdate(ctx, env, cm, func() error {
			cm.Data = map[string]string{nodeconfig.PublishedKey: nodeconfig.Publish(rm, nil, "").Encode()}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	good := v1alpha1.RegistryMirrorSpec{Host: "kept.local", HostAliases: []v1alpha1.HostAlias{{IP: "10.1.2.3", Hostnames: []v1alpha1.Hostname{"kept.local"}}}}
	publish(good)
	var before map[string]string
	envtest.Eventually(t, func() error {
		before = n.Snapshot(t)
		if got := before["kept.local/hosts.toml"]; !strings.Contains(got, "https://kept.local") {
			return fmt.Errorf("hosts.toml not written: %s", got)
		}
		if !strings.Contains(before["<hosts file>"], "10.1.2.3\tkept.local") {
			return fmt.Errorf("hosts entry not written:\n%s", before["<hosts file>"])
		}
		return nil
	})

	bad := good
	bad.Host = "../../etc"
	publish(bad)
	envtest.Eventually(t, func() error {
		rn := &v1alpha1.RegistryNode{}
		if err := env.Get(ctx, client.ObjectKey{Name: "node-keep"}, rn); err != nil {
			return err
		}
		for _, m := range rn.Status.Mirrors {
			if m.Name == "kept" && m.Reason == v1alpha1.ReasonApplyFailed && strings.Contains(m.Error, "spec.host") {
				return nil
			}
		}
		return fmt.Errorf("no refusal reported: %+v", rn.Status.Mirrors)
	})
	if err := agenttest.SameTree(before, n.Snapshot(t)); err != nil {
		t.Errorf("the node did not keep its last good configuration: %v", err)
	}
}
