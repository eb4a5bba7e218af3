package registrymirror

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
)

// TestTheFailingNodesListIsTheSameWhateverTheCachesOrder: with more failing nodes than the
// list holds, every order the cache may list them in gives the same status (a status that
// differs is a write, and at thousands of nodes one on every reconcile); the list is
// sorted by reason then name and every failing node is counted by reason.
func TestTheFailingNodesListIsTheSameWhateverTheCachesOrder(t *testing.T) {
	t.Parallel()
	rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 2}}
	var nodes []*corev1.Node
	var reports []v1alpha1.RegistryNode
	for i := range 60 {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%02d", i)}}
		nodes = append(nodes, n)
		switch i % 3 {
		case 0: // no report: AgentNotReporting
		case 1: // an unreachable registry: ProbeFailed
			reports = append(reports, v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: n.Name},
				Status: v1alpha1.RegistryNodeStatus{Mirrors: []v1alpha1.NodeMirrorStatus{{Name: "m", ObservedGeneration: 2,
					Probe: &v1alpha1.ProbeResult{Reachable: false, Error: "connection refused"}}}}})
		default: // ready
			reports = append(reports, v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: n.Name},
				Status: v1alpha1.RegistryNodeStatus{Mirrors: []v1alpha1.NodeMirrorStatus{{Name: "m", ObservedGeneration: 2,
					Probe: &v1alpha1.ProbeResult{Reachable: true}}}}})
		}
	}
	first := aggregateNodes(rm, nodes, reports)
	for range 20 {
		rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
		rand.Shuffle(len(reports), func(i, j int) { reports[i], reports[j] = reports[j], reports[i] })
		if got := aggregateNodes(rm, nodes, reports); !reflect.DeepEqual(got, first) {
			t.Fatalf("another order gave another status:\n%+v\nwant\n%+v", got, first)
		}
	}
	if first.Desired != 60 || first.Ready != 20 || len(first.Failing) != maxFailing {
		t.Fatalf("status %d/%d with %d listed", first.Ready, first.Desired, len(first.Failing))
	}
	// AgentNotReporting sorts first: the 20 listed are its nodes, by name.
	for i, f := range first.Failing {
		if want := fmt.Sprintf("node-%02d", 3*i); f.Reason != v1alpha1.ReasonAgentNotReporting || f.Name != want {
			t.Fatalf("failing[%d] = %s %s, want %s AgentNotReporting", i, f.Name, f.Reason, want)
		}
	}
	want := []v1alpha1.ReasonCount{{Reason: v1alpha1.ReasonAgentNotReporting, Count: 20}, {Reason: v1alpha1.ReasonProbeFailed, Count: 20}}
	if !reflect.DeepEqual(first.FailingReasons, want) {
		t.Errorf("failingReasons %+v, want %+v", first.FailingReasons, want)
	}
	if got := failingSummary(&first); got != "20 AgentNotReporting, 20 ProbeFailed" {
		t.Errorf("summary %q", got)
	}
}
