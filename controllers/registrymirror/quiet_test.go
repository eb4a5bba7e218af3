package registrymirror_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
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
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteAndWait(t, rm) })
	ds := &appsv1.DaemonSet{}
	cm := &corev1.ConfigMap{}
	versions := func() string {
		_ = env.Get(ctx, client.ObjectKeyFromObject(rm), rm)
		_ = env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: agentdaemonset.Name}, ds)
		_ = env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: nodeconfig.PublishedName(rm.Name)}, cm)
		return fmt.Sprintf("mirror %s, DaemonSet %s, ConfigMap %s", rm.ResourceVersion, ds.ResourceVersion, cm.ResourceVersion)
	}
	envtest.Eventually(t, func() error {
		if rm.Status.ObservedGeneration != rm.Generation || ds.ResourceVersion == "" || cm.ResourceVersion == "" {
			return fmt.Errorf("not settled: %s", versions())
		}
		return nil
	})
	// The last status write of the first reconciles, and reconciles of earlier tests' mirrors
	// their agents' reports bring (gathered for 2 s), land before the count starts.
	time.Sleep(3 * time.Second)
	before := versions()
	writes := testutil.APIWrites(t, env.Config)
	relabelFiveTimes(t, newNode(t, "quiet-node"))
	if after := versions(); after != before {
		t.Errorf("reconciling an unchanged mirror changed objects: before %s, after %s", before, after)
	}
	// A write that changes nothing keeps the resource version; the API server still counts
	// the request.
	for resource, n := range testutil.APIWrites(t, env.Config) {
		if d := n - writes[resource]; d > 0 && resource != "leases" && resource != "nodes" && resource != "events" {
			t.Errorf("%v write request(s) to %s while nothing changed", d, resource)
		}
	}
}

// TestManySilentNodesDoNotMakeTheStatusChurn: a mirror selects 30 nodes whose agents never
// report, more than status.nodes.failing lists. Every reconcile lists the nodes in the
// cache's order, which changes; the status must not, so relabelling a node (which
// reconciles every mirror) writes nothing.
func TestManySilentNodesDoNotMakeTheStatusChurn(t *testing.T) {
	ctx := context.Background()
	var nodes []*corev1.Node
	for i := range 30 {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("silent-%02d", i), Labels: map[string]string{"regwire.test/silent": "true"}}}
		if err := env.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Delete(context.Background(), n) })
		nodes = append(nodes, n)
	}
	rm := env.NewMirror(t, "silent-nodes", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.NodeSelector = map[string]string{"regwire.test/silent": "true"}
	})
	envtest.Eventually(t, func() error {
		if err := env.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
			return err
		}
		if st := rm.Status.Nodes; st == nil || st.Desired != 30 || len(st.FailingReasons) != 1 || st.FailingReasons[0].Count != 30 {
			return fmt.Errorf("status.nodes %+v", rm.Status.Nodes)
		}
		return nil
	})
	time.Sleep(time.Second) // the last status write of the first reconciles
	_ = env.Get(ctx, client.ObjectKeyFromObject(rm), rm)
	before := rm.ResourceVersion
	relabelFiveTimes(t, nodes[0])
	_ = env.Get(ctx, client.ObjectKeyFromObject(rm), rm)
	if rm.ResourceVersion != before {
		t.Errorf("the mirror was written while its nodes stayed as they were (resourceVersion %s, then %s): failing %v", before, rm.ResourceVersion, rm.Status.Nodes.Failing)
	}
	if c := rm.Status.Nodes.Failing; len(c) != 20 || c[0].Name != "silent-00" || c[19].Name != "silent-19" {
		t.Errorf("failing lists %v, want silent-00 … silent-19", c)
	}
}

// TestASettledMirrorReadsNoSecretFromTheAPIServer: a mirror with credentials and pull
// secrets, reconciled again and again (node relabels), reads its Secrets from the manager's
// Secret cache: not one GET or LIST of Secrets reaches the API server.
func TestASettledMirrorReadsNoSecretFromTheAPIServer(t *testing.T) {
	ctx := context.Background()
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "cached-creds"}, Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "puller", "password": "pull-password"}}
	if err := env.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), creds) })
	env.CreateNamespace(t, "cached-apps", map[string]string{"regwire.test/cached": "true"})
	rm := env.NewMirror(t, "cached", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.NodeSelector = map[string]string{"regwire.test/cached": "never"}
		rm.Spec.CredentialsSecretRef = &v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: creds.Name}
		rm.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "cached-pull",
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"regwire.test/cached": "true"}}}
	})
	env.MirrorCondition(t, rm.Name, v1alpha1.ConditionPullSecretsReady, metav1.ConditionTrue, v1alpha1.ReasonPullSecretsReady)
	time.Sleep(3 * time.Second) // earlier reconciles and their reports' batches settle
	reads := testutil.APIReads(t, env.Config)
	relabelFiveTimes(t, newNode(t, "cached-node"))
	if d := testutil.APIReads(t, env.Config)["secrets"] - reads["secrets"]; d != 0 {
		t.Errorf("%v GET or LIST request(s) for Secrets while mirrors were reconciled, want 0", d)
	}
}

// newNode creates a Node for the test, deleted when it ends.
func newNode(t *testing.T, name string) *corev1.Node {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if err := env.Create(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), node) })
	return node
}

// relabelFiveTimes changes a label of node five times, which reconciles every mirror each
// time, and checks that the reconciles happened.
func relabelFiveTimes(t *testing.T, node *corev1.Node) {
	t.Helper()
	reconciles := envtest.ReconcileCount(t, "registrymirror")
	for i := range 5 {
		env.Mutate(t, node, func() {
			if node.Labels == nil {
				node.Labels = map[string]string{}
			}
			node.Labels["round"] = fmt.Sprint(i)
		})
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := envtest.ReconcileCount(t, "registrymirror") - reconciles; n < 5 {
		t.Fatalf("only %v reconciles of RegistryMirrors; the test wants them to happen", n)
	}
}
