package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// TestTheAgentWakesForNodeChangesThatMatterOnly: kubelet's status heartbeats (conditions,
// images, resource versions) do not wake the agent; labels, taints and the container
// runtime, which decide what it writes, do.
func TestTheAgentWakesForNodeChangesThatMatterOnly(t *testing.T) {
	t.Parallel()
	base := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", ResourceVersion: "1", Labels: map[string]string{"pool": "a"}},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: "containerd://2.1.4"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(time.Unix(1, 0))}}},
	}
	p := nodeChangedForAgent()
	for _, tc := range []struct {
		name   string
		change func(*corev1.Node)
		wakes  bool
	}{
		{"a heartbeat does not wake it", func(n *corev1.Node) {
			n.ResourceVersion = "2"
			n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Unix(11, 0))
			n.Status.Images = []corev1.ContainerImage{{Names: []string{"busybox"}}}
		}, false},
		{"a new label wakes it", func(n *corev1.Node) { n.Labels = map[string]string{"pool": "b"} }, true},
		{"a new taint wakes it", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}, true},
		{"another container runtime wakes it", func(n *corev1.Node) { n.Status.NodeInfo.ContainerRuntimeVersion = "cri-o://1.33.0" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			changed := base.DeepCopy()
			tc.change(changed)
			if got := p.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: changed}); got != tc.wakes {
				t.Errorf("wakes = %v, want %v", got, tc.wakes)
			}
		})
	}
}

// TestAgentsSpreadTheirResyncsOverThePeriod: 1,000 agents started at the same moment
// resync (and probe their registries) spread over the minute, each at least half a period
// and at most a period and a half after the last, and then exactly a period apart.
func TestAgentsSpreadTheirResyncsOverThePeriod(t *testing.T) {
	t.Parallel()
	const period = time.Minute
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	buckets := make([]int, 6)
	for i := range 1000 {
		node := fmt.Sprintf("worker-%04d", i)
		d := untilPhase(node, period, now)
		if d < period/2 || d >= period*3/2 {
			t.Fatalf("%s resyncs after %s, want within [30s, 90s)", node, d)
		}
		at := now.Add(d)
		buckets[int(at.Sub(now.Add(period/2))/(10*time.Second))]++
		if again := untilPhase(node, period, at); again != period {
			t.Fatalf("%s: the resync after is %s later, want %s", node, again, period)
		}
	}
	for i, n := range buckets {
		if n < 120 || n > 220 {
			t.Errorf("bucket %d holds %d of 1,000 resyncs: not spread (%v)", i, n, buckets)
		}
	}
}

// TestAChangedContainerdConfigWakesTheAgent: the agent sees its containerd configuration
// file change (config_path added or taken out) within a poll, with no API event; an
// untouched file wakes nothing.
func TestAChangedContainerdConfigWakesTheAgent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte("version = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woke := make(chan struct{}, 8)
	go watchFile(ctx, path, 10*time.Millisecond, func() { woke <- struct{}{} })
	select {
	case <-woke:
		t.Fatal("an untouched file woke the agent")
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.WriteFile(path, []byte("version = 2\n[plugins]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("a changed file did not wake the agent")
	}
}
