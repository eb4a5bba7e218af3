package registrymirror

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/scheme"
)

// TestTheMirrorPublishesAReportWindowForItsNodesThatHoldsAtTheirEdge: the published
// report window follows the nodes the mirror selects, keeps its step while the fleet hovers
// just below it (no republish to every node), and a publish that changes nothing writes
// nothing.
func TestTheMirrorPublishesAReportWindowForItsNodesThatHoldsAtTheirEdge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	r := &Reconciler{Client: c, Namespace: "regwire-system", AgentReportRate: 100}
	rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "fleet", UID: "u-1", Generation: 3},
		Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: "https://nexus.local"}}
	published := func() (time.Duration, string) {
		t.Helper()
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: nodeconfig.PublishedName(rm.Name)}, cm); err != nil {
			t.Fatal(err)
		}
		p, _, err := nodeconfig.FromConfigMap(cm)
		if err != nil {
			t.Fatal(err)
		}
		if p.Generation != 3 {
			t.Errorf("generation %d published, want 3: a window is no change of the mirror", p.Generation)
		}
		return p.ReportWindow(), cm.ResourceVersion
	}
	for _, step := range []struct {
		nodes     int
		want      time.Duration
		unchanged bool
	}{
		{nodes: 300, want: 0},
		{nodes: 5000, want: 50 * time.Second},
		{nodes: 4950, want: 50 * time.Second, unchanged: true},
		{nodes: 5001, want: 60 * time.Second},
		{nodes: 4990, want: 60 * time.Second, unchanged: true},
		{nodes: 2000, want: 20 * time.Second},
	} {
		before := ""
		if step.nodes != 300 { // published since the first step
			_, before = published()
		}
		if err := r.publish(ctx, rm, nil, "", step.nodes); err != nil {
			t.Fatal(err)
		}
		got, after := published()
		if got != step.want {
			t.Errorf("%d nodes: window %s, want %s", step.nodes, got, step.want)
		}
		if step.unchanged && after != before {
			t.Errorf("%d nodes: the ConfigMap was written (resourceVersion %s → %s) though its window stayed", step.nodes, before, after)
		}
	}
}
