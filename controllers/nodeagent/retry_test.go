package nodeagent

import (
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
)

func TestAProbeThatHasJustStartedFailingIsAskedAgainSoon(t *testing.T) {
	t.Parallel()
	report := func(gen int64, reachable bool) v1alpha1.RegistryNodeStatus {
		return v1alpha1.RegistryNodeStatus{Mirrors: []v1alpha1.NodeMirrorStatus{
			{Name: "nexus", ObservedGeneration: gen, Probe: &v1alpha1.ProbeResult{Reachable: reachable}},
		}}
	}
	for _, tc := range []struct {
		name     string
		old, now v1alpha1.RegistryNodeStatus
		soon     bool
	}{
		{"a registry that answered and now does not", report(1, true), report(1, false), true},
		{"a new generation whose first probe fails", report(1, true), report(2, false), true},
		{"the node's first report, failing", v1alpha1.RegistryNodeStatus{}, report(1, false), true},
		{"a registry that stays down: the next resync", report(1, false), report(1, false), false},
		{"a registry that answers", report(1, false), report(1, true), false},
		{"a mirror not probed (its files failed)", report(1, true), v1alpha1.RegistryNodeStatus{Mirrors: []v1alpha1.NodeMirrorStatus{{Name: "nexus", ObservedGeneration: 1}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := newlyUnreachable(tc.old, tc.now); got != tc.soon {
				t.Errorf("newlyUnreachable = %t, want %t", got, tc.soon)
			}
		})
	}
}
