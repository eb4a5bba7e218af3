package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/agenttest"
	"github.com/regwire/regwire/controllers/registrymirror"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/testutil"
)

// fakeNode is one "node": a Node object and an in-process agent with its own
// containerd configuration root and hosts file.
type fakeNode = agenttest.Node

const baseHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"

// startNode creates a Node and runs an agent for it until the test ends.
func startNode(t *testing.T, name string, labels map[string]string, foreign map[string]string) *fakeNode {
	t.Helper()
	return startNodeIn(t, operatorNamespace, name, labels, foreign)
}

// startNodeIn is startNode with an agent that reads published mirrors from namespace.
func startNodeIn(t *testing.T, namespace, name string, labels map[string]string, foreign map[string]string) *fakeNode {
	t.Helper()
	return agenttest.Start(t, restConfig, k8s, name, agenttest.Options{Namespace: namespace, HostsContent: baseHosts,
		Resync: 300 * time.Millisecond, Labels: labels, Files: foreign})
}

// waitNodes waits until the mirror reports want (e.g. "3/3") for its current generation
// and returns how long that took.
func waitNodes(t *testing.T, name, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	rm := &v1alpha1.RegistryMirror{}
	var last string
	for {
		err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, rm)
		if err == nil && rm.Status.ObservedGeneration == rm.Generation && rm.Status.Nodes != nil && rm.Status.Nodes.Summary == want {
			c := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionNodesReady)
			if c != nil && c.Status == metav1.ConditionTrue {
				return time.Since(start)
			}
		}
		last = fmt.Sprintf("err=%v nodes=%+v conditions=%+v", err, rm.Status.Nodes, rm.Status.Conditions)
		if time.Since(start) > timeout {
			nodes, reports := &corev1.NodeList{}, &v1alpha1.RegistryNodeList{}
			_ = k8s.List(context.Background(), nodes)
			_ = k8s.List(context.Background(), reports)
			for _, n := range nodes.Items {
				t.Logf("node %s labels=%v taints=%v", n.Name, n.Labels, n.Spec.Taints)
			}
			for _, r := range reports.Items {
				t.Logf("report %s: %+v", r.Name, r.Status)
			}
			t.Fatalf("status.nodes did not reach %s within %s: %s", want, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestThreeNodesConvergeRepairDriftAndCleanUp is issue 4's "must show": three agents
// converge within 2 s of a change, status.nodes says 3/3, a file removed by hand comes
// back, and deleting the mirror leaves every node exactly as it was.
func TestThreeNodesConvergeRepairDriftAndCleanUp(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "nodes test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	endpoint := testutil.ChallengeServer(t, ca).URL

	foreignNexus := "# written by hand before regwire\nserver = \"https://10.9.9.9\"\n"
	nodes := []*fakeNode{
		startNode(t, "node-a", map[string]string{"pool": "a"}, map[string]string{"nexus.local/hosts.toml": foreignNexus, "other.local/hosts.toml": "x\n"}),
		startNode(t, "node-b", map[string]string{"pool": "a"}, nil),
		startNode(t, "node-c", map[string]string{"pool": "b"}, map[string]string{"docker.io/hosts.toml": "server = \"https://registry-1.docker.io\"\n"}),
	}

	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "three-nodes"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: "nexus.local", Endpoint: endpoint, CABundle: ca.PEM,
			HostAliases: []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.local"}}},
		},
	}
	if err := k8s.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	took := waitNodes(t, rm.Name, "3/3", 20*time.Second)
	t.Logf("three nodes applied a new mirror and reached the registry in %s", took)
	rn := &v1alpha1.RegistryNode{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "node-a"}, rn); err != nil {
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
		if got := n.Snapshot(t)["<hosts file>"]; !strings.HasPrefix(got, baseHosts) || !strings.Contains(got, "127.0.0.1\tnexus.local\t# three-nodes\n") {
			t.Errorf("%s: hosts file =\n%s", n.Name, got)
		}
	}

	// The operator runs the agent as a DaemonSet and publishes the mirror for it.
	ds := &appsv1.DaemonSet{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: registrymirror.AgentDaemonSetName}, ds); err != nil {
		t.Fatalf("agent DaemonSet: %v", err)
	}
	var paths []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("agent volume %s is not a hostPath: the agent needs nothing writable of its own", v.Name)
			continue
		}
		paths = append(paths, v.HostPath.Path)
	}
	if want := []string{"/etc/hosts", "/etc/containerd/certs.d", "/etc/containerd"}; !slices.Equal(paths, want) {
		t.Errorf("agent DaemonSet mounts %v, want exactly %v (the hosts file, certs.d, and containerd's configuration read-only)", paths, want)
	}
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: nodeconfig.PublishedName(rm.Name)}, cm); err != nil {
		t.Fatalf("published ConfigMap: %v", err)
	}

	// A change (CA rotation) converges on all three nodes within 2 s.
	ca2 := testutil.NewCA(t, "rotated CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	bundle := ca.PEM + ca2.PEM // the server still presents a certificate from the first CA
	update(t, rm, func() {
		rm.Spec.CABundle = bundle
	})
	took = waitNodes(t, rm.Name, "3/3", 2*time.Second)
	t.Logf("three nodes applied a CA rotation in %s", took)
	for _, n := range nodes {
		if got := n.File("nexus.local/ca.crt"); !strings.Contains(got, strings.TrimSpace(ca2.PEM)) {
			t.Errorf("%s: ca.crt lacks the rotated CA", n.Name)
		}
	}

	// A younger mirror claiming the same host loses on every node and is told why; the
	// winner's files stay.
	rival := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "three-nodes-rival"},
		Spec:       v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: "https://10.0.0.1"},
	}
	if err := k8s.Create(ctx, rival); err != nil {
		t.Fatal(err)
	}
	_, c := mirrorCondition(t, rival.Name, v1alpha1.ConditionNodesReady, metav1.ConditionFalse, v1alpha1.ReasonHostConflict)
	if want := "host nexus.local is configured by RegistryMirror three-nodes"; !strings.Contains(c.Message, want) {
		t.Errorf("rival's NodesReady message %q does not say %q", c.Message, want)
	}
	waitNodes(t, rm.Name, "3/3", 5*time.Second)
	if got := nodes[0].File("nexus.local/hosts.toml"); !strings.Contains(got, endpoint) {
		t.Errorf("the rival replaced the winner's hosts.toml:\n%s", got)
	}
	if err := k8s.Delete(ctx, rival); err != nil {
		t.Fatal(err)
	}

	// Drift: a file removed by hand is repaired by the periodic resync.
	if err := os.Remove(filepath.Join(nodes[1].Root, "nexus.local/hosts.toml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if got := nodes[1].File("nexus.local/hosts.toml"); !strings.Contains(got, endpoint) {
			return fmt.Errorf("node-b's hosts.toml not repaired: %s", got)
		}
		return nil
	})

	// Narrowing the node selector withdraws the mirror from node-c.
	update(t, rm, func() {
		rm.Spec.NodeSelector = map[string]string{"pool": "a"}
	})
	waitNodes(t, rm.Name, "2/2", 5*time.Second)
	eventually(t, func() error { return sameTree(nodes[2].Before, nodes[2].Snapshot(t)) })

	// Deleting the mirror waits for the nodes and leaves each exactly as before.
	deleteAndWait(t, rm)
	for _, n := range nodes {
		if err := sameTree(n.Before, n.Snapshot(t)); err != nil {
			t.Errorf("%s after deletion: %v", n.Name, err)
		}
	}
}

// sameTree compares two snapshots.
func sameTree(want, got map[string]string) error {
	for k, v := range want {
		if g, ok := got[k]; !ok {
			return fmt.Errorf("%s is missing", k)
		} else if g != v {
			return fmt.Errorf("%s is\n%q\nwant\n%q", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("%s is left over", k)
		}
	}
	return nil
}

func TestAnInvalidNodeSelectorIsReported(t *testing.T) {
	t.Parallel()
	newMirror(t, "bad-selector", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.NodeSelector = map[string]string{"pool": "a b"}
	})
	_, c := mirrorCondition(t, "bad-selector", v1alpha1.ConditionNodesReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec)
	if !strings.HasPrefix(c.Message, "spec.nodeSelector: ") {
		t.Errorf("message %q does not name spec.nodeSelector", c.Message)
	}
}

// TestAnUnsafePublishedMirrorKeepsTheLastGoodFiles feeds an agent a published mirror by
// hand (in a namespace no controller publishes to), then an unsafe version of it, as an
// object written before a stricter CRD might be: the node refuses it, says why, and keeps
// the files and hosts entries it had.
func TestAnUnsafePublishedMirrorKeepsTheLastGoodFiles(t *testing.T) {
	ctx := context.Background()
	const ns = "hand-published"
	createNamespace(t, ns, nil)
	n := startNodeIn(t, ns, "node-keep", nil, nil)

	publish := func(spec v1alpha1.RegistryMirrorSpec) {
		t.Helper()
		rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "kept", Generation: 1}, Spec: spec}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept", Labels: map[string]string{nodeconfig.PublishedLabel: "true"}}}
		_, err := controllerutil.CreateOrUpdate(ctx, k8s, cm, func() error {
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
	eventually(t, func() error {
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
	eventually(t, func() error {
		rn := &v1alpha1.RegistryNode{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: "node-keep"}, rn); err != nil {
			return err
		}
		for _, m := range rn.Status.Mirrors {
			if m.Name == "kept" && m.Reason == v1alpha1.ReasonApplyFailed && strings.Contains(m.Error, "spec.host") {
				return nil
			}
		}
		return fmt.Errorf("no refusal reported: %+v", rn.Status.Mirrors)
	})
	if err := sameTree(before, n.Snapshot(t)); err != nil {
		t.Errorf("the node did not keep its last good configuration: %v", err)
	}
}
