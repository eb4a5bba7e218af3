package registrymirror_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestThreeNodesConvergeRepairDriftAndCleanUp: three agents
// converge within 2 s of a change, status.nodes says 3/3, a file removed by hand comes
// back, and deleting the mirror leaves every node exactly as it was.
func TestThreeNodesConvergeRepairDriftAndCleanUp(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "nodes test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	endpoint := testutil.ChallengeServer(t, ca).URL

	foreignNexus := "# written by hand before regwire\nserver = \"https://10.9.9.9\"\n"
	nodes := []*agenttest.Node{
		env.StartNode(t, "node-a", map[string]string{"pool": "a"}, map[string]string{"nexus.local/hosts.toml": foreignNexus, "other.local/hosts.toml": "x\n"}),
		env.StartNode(t, "node-b", map[string]string{"pool": "a"}, nil),
		env.StartNode(t, "node-c", map[string]string{"pool": "b"}, map[string]string{"docker.io/hosts.toml": "server = \"https://registry-1.docker.io\"\n"}),
	}

	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "three-nodes"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: "nexus.local", Endpoint: endpoint, CABundle: ca.PEM,
			HostAliases: []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.local"}}},
		},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	took := env.WaitNodes(t, rm.Name, "3/3", 20*time.Second)
	t.Logf("three nodes applied a new mirror and reached the registry in %s", took)
	rn := &v1alpha1.RegistryNode{}
	if err := env.Get(ctx, client.ObjectKey{Name: "node-a"}, rn); err != nil {
		t.Fatal(err)
	}
	if len(rn.Status.Mirrors) != 1 || !strings.HasPrefix(rn.Status.Mirrors[0].AppliedHash, "sha256:") || rn.Status.Mirrors[0].Probe == nil || !rn.Status.Mirrors[0].Probe.Reachable {
		t.Errorf("node-a reports %+v, want the mirror's applied hash and a reachable probe", rn.Status.Mirrors)
	}

	for _, n := range nodes {
		if got := n.File("nexus.local/hosts.toml"); !strings.Contains(got, "server = '"+endpoint+"'") || !strings.Contains(got, "ca = 'ca.crt'") {
			t.Errorf("%s: nexus.local/hosts.toml =\n%s", n.Name, got)
		}
		if got := n.File("nexus.local/ca.crt"); strings.TrimSpace(got) != strings.TrimSpace(ca.PEM) {
			t.Errorf("%s: ca.crt is not the mirror's CA", n.Name)
		}
		if got := n.Snapshot(t)["<hosts file>"]; !strings.HasPrefix(got, envtest.BaseHosts) || !strings.Contains(got, "127.0.0.1\tnexus.local\t# three-nodes\n") {
			t.Errorf("%s: hosts file =\n%s", n.Name, got)
		}
	}

	// The operator publishes the mirror for the agents.
	cm := &corev1.ConfigMap{}
	if err := env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: nodeconfig.PublishedName(rm.Name)}, cm); err != nil {
		t.Fatalf("published ConfigMap: %v", err)
	}

	// A change (CA rotation) reaches the files of all three nodes within 2 s; status.nodes
	// follows once the reports' batch (2 s) is aggregated.
	ca2 := testutil.NewCA(t, "rotated CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	bundle := ca.PEM + ca2.PEM // the server still presents a certificate from the first CA
	start := time.Now()
	env.Mutate(t, rm, func() {
		rm.Spec.CABundle = bundle
	})
	if err := testutil.Poll(2*time.Second, 20*time.Millisecond, func() error {
		for _, n := range nodes {
			if got := n.File("nexus.local/ca.crt"); !strings.Contains(got, strings.TrimSpace(ca2.PEM)) {
				return fmt.Errorf("%s: ca.crt lacks the rotated CA", n.Name)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("after 2 s: %v", err)
	}
	t.Logf("three nodes wrote a CA rotation in %s", time.Since(start))
	took = env.WaitNodes(t, rm.Name, "3/3", 5*time.Second)
	t.Logf("status.nodes said 3/3 after %s", took)

	// A younger mirror claiming the same host loses on every node and is told why; the
	// winner's files stay.
	rival := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "three-nodes-rival"},
		Spec:       v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: "https://10.0.0.1"},
	}
	if err := env.Create(ctx, rival); err != nil {
		t.Fatal(err)
	}
	_, c := env.MirrorCondition(t, rival.Name, v1alpha1.ConditionNodesReady, metav1.ConditionFalse, v1alpha1.ReasonHostConflict)
	if want := "host nexus.local is configured by RegistryMirror three-nodes"; !strings.Contains(c.Message, want) {
		t.Errorf("rival's NodesReady message %q does not say %q", c.Message, want)
	}
	env.WaitNodes(t, rm.Name, "3/3", 5*time.Second)
	if got := nodes[0].File("nexus.local/hosts.toml"); !strings.Contains(got, endpoint) {
		t.Errorf("the rival replaced the winner's hosts.toml:\n%s", got)
	}
	if err := env.Delete(ctx, rival); err != nil {
		t.Fatal(err)
	}

	// Drift: a file removed by hand is repaired by the periodic resync.
	if err := os.Remove(filepath.Join(nodes[1].Root, "nexus.local/hosts.toml")); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, func() error {
		if got := nodes[1].File("nexus.local/hosts.toml"); !strings.Contains(got, endpoint) {
			return fmt.Errorf("node-b's hosts.toml not repaired: %s", got)
		}
		return nil
	})

	// Narrowing the node selector withdraws the mirror from node-c.
	env.Mutate(t, rm, func() {
		rm.Spec.NodeSelector = map[string]string{"pool": "a"}
	})
	env.WaitNodes(t, rm.Name, "2/2", 5*time.Second)
	envtest.Eventually(t, func() error { return agenttest.SameTree(nodes[2].Before, nodes[2].Snapshot(t)) })

	// Deleting the mirror waits for the nodes and leaves each exactly as before.
	env.DeleteAndWait(t, rm)
	for _, n := range nodes {
		if err := agenttest.SameTree(n.Before, n.Snapshot(t)); err != nil {
			t.Errorf("%s after deletion: %v", n.Name, err)
		}
	}
}

func TestAnInvalidNodeSelectorIsReported(t *testing.T) {
	t.Parallel()
	env.NewMirror(t, "bad-selector", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.NodeSelector = map[string]string{"pool": "a b"}
	})
	_, c := env.MirrorCondition(t, "bad-selector", v1alpha1.ConditionNodesReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec)
	if !strings.HasPrefix(c.Message, "spec.nodeSelector: ") {
		t.Errorf("message %q does not name spec.nodeSelector", c.Message)
	}
}

// TestACABundleIsPublishedOnceAndSharedByTheMirrorsThatTrustIt: a mirror's CA bundle goes
// to the agents in an immutable ConfigMap named by its digest, which each mirror trusting
// it owns and refers to; a change of a mirror leaves the bundle untouched, a new CA brings
// a new bundle, and the last mirror to let a bundle go deletes it.
func TestACABundleIsPublishedOnceAndSharedByTheMirrorsThatTrustIt(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "shared CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	a := env.NewMirror(t, "bundle-a", func(rm *v1alpha1.RegistryMirror) { rm.Spec.Host, rm.Spec.CABundle = "bundle-a.local", ca.PEM })
	b := env.NewMirror(t, "bundle-b", func(rm *v1alpha1.RegistryMirror) { rm.Spec.Host, rm.Spec.CABundle = "bundle-b.local", ca.PEM })

	published := func(rm *v1alpha1.RegistryMirror, gen int64) nodeconfig.Published {
		t.Helper()
		var p nodeconfig.Published
		envtest.Eventually(t, func() error {
			cm := &corev1.ConfigMap{}
			if err := env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: nodeconfig.PublishedName(rm.Name)}, cm); err != nil {
				return err
			}
			var err error
			if p, _, err = nodeconfig.FromConfigMap(cm); err != nil {
				return err
			}
			if p.Generation < gen {
				return fmt.Errorf("published generation %d, want %d", p.Generation, gen)
			}
			if strings.Contains(cm.Data[nodeconfig.PublishedKey], "BEGIN CERTIFICATE") || p.CADigest == "" {
				return fmt.Errorf("the mirror's ConfigMap holds the CA itself, or no digest: %s", cm.Data[nodeconfig.PublishedKey])
			}
			return nil
		})
		return p
	}
	bundle := func(digest string) (*corev1.ConfigMap, error) {
		cm := &corev1.ConfigMap{}
		err := env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: nodeconfig.CABundleName(digest)}, cm)
		return cm, err
	}
	owners := func(cm *corev1.ConfigMap) []string {
		var out []string
		for _, o := range cm.OwnerReferences {
			out = append(out, o.Name)
		}
		slices.Sort(out)
		return out
	}
	pa, pb := published(a, 1), published(b, 1)
	if pa.CADigest != pb.CADigest {
		t.Fatalf("two mirrors trusting one CA refer to bundles %s and %s", pa.CADigest, pb.CADigest)
	}
	var shared *corev1.ConfigMap
	envtest.Eventually(t, func() error {
		var err error
		if shared, err = bundle(pa.CADigest); err != nil {
			return err
		}
		if got := owners(shared); !slices.Equal(got, []string{"bundle-a", "bundle-b"}) {
			return fmt.Errorf("bundle owned by %v", got)
		}
		return nil
	})
	if shared.Immutable == nil || !*shared.Immutable || !strings.Contains(shared.Data[nodeconfig.CABundleKey], strings.TrimSpace(ca.PEM)) {
		t.Fatalf("the bundle is not the immutable CA: immutable %v, %q", shared.Immutable, shared.Data[nodeconfig.CABundleKey])
	}

	// A change of the mirror that keeps its CA: the bundle is not written again.
	env.Mutate(t, a, func() {
		a.Spec.HostAliases = []v1alpha1.HostAlias{{IP: "10.0.0.9", Hostnames: []v1alpha1.Hostname{"bundle-a.local"}}}
	})
	published(a, 2)
	if again, err := bundle(pa.CADigest); err != nil || again.ResourceVersion != shared.ResourceVersion {
		t.Errorf("the bundle was written again for a change that kept the CA (%v)", err)
	}

	// A new CA: a new bundle for a; the old one stays b's alone.
	ca2 := testutil.NewCA(t, "another CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	env.Mutate(t, a, func() { a.Spec.CABundle = ca2.PEM })
	pa = published(a, 3)
	envtest.Eventually(t, func() error {
		old, err := bundle(pb.CADigest)
		if err != nil {
			return err
		}
		if got := owners(old); !slices.Equal(got, []string{"bundle-b"}) {
			return fmt.Errorf("the old bundle is owned by %v, want bundle-b alone", got)
		}
		if _, err := bundle(pa.CADigest); err != nil {
			return fmt.Errorf("a's new bundle: %w", err)
		}
		return nil
	})

	env.DeleteAndWait(t, b)
	env.DeleteAndWait(t, a)
	for _, d := range []string{pb.CADigest, pa.CADigest} {
		if _, err := bundle(d); !apierrors.IsNotFound(err) {
			t.Errorf("bundle %s outlived the mirrors that used it: %v", nodeconfig.CABundleName(d), err)
		}
	}
}
