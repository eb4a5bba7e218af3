package nodeagent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
)

// testProber probes one registry whose answer up decides, counting the probes.
func testProber(up *atomic.Bool, asked *atomic.Int64, changed func()) *prober {
	r := &Reconciler{NodeName: "node-a", Resync: time.Hour, Clock: clock.RealClock{},
		Probe: func(context.Context, nodeconfig.Mirror) probe.Result {
			asked.Add(1)
			if up.Load() {
				return probe.Result{Reachable: true, StatusCode: 200}
			}
			return probe.Result{Err: "connection refused"}
		},
		AnonymousPull: func(context.Context, nodeconfig.Mirror, v1alpha1.UpstreamMirror) string { return "" },
	}
	return newProber(r, changed)
}

var nexus = nodeconfig.Mirror{Name: "nexus", Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local"}}

func TestTheProberAnnouncesChangedAnswersAndWhatHasJustStartedFailing(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	var asked atomic.Int64
	p := testProber(&up, &asked, func() {})
	ctx := context.Background()
	p.want([]nodeconfig.Mirror{nexus})
	for _, step := range []struct {
		name                  string
		up, all               bool
		changed, newlyFailing bool
		probes                int64
	}{
		{"the first answer, failing", false, false, true, true, 1},
		{"nothing new to ask: no probe", false, false, false, false, 0},
		{"a registry that stays down", false, true, false, false, 1},
		{"a registry that answers again", true, true, true, false, 1},
		{"a registry that answered and now does not", false, true, true, true, 1},
	} {
		up.Store(step.up)
		before := asked.Load()
		changed, newly := p.round(ctx, step.all)
		if changed != step.changed || newly != step.newlyFailing || asked.Load()-before != step.probes {
			t.Errorf("%s: changed %t, newly failing %t, %d probes; want %t, %t, %d", step.name, changed, newly, asked.Load()-before, step.changed, step.newlyFailing, step.probes)
		}
	}
	// A changed mirror is something else to ask about.
	other := nexus
	other.Spec.Endpoint = "https://10.0.0.1:8443"
	if a := p.want([]nodeconfig.Mirror{other}); len(a) != 0 {
		t.Errorf("the answer for the mirror as it was is given for the changed mirror: %+v", a)
	}
	if changed, _ := p.round(ctx, false); !changed {
		t.Error("the changed mirror was not asked about")
	}
}

func TestARegistryThatHasJustStoppedAnsweringIsAskedAgainSoon(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	var asked atomic.Int64
	changes := make(chan struct{}, 16)
	p := testProber(&up, &asked, func() { changes <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Start(ctx) }()

	p.want([]nodeconfig.Mirror{nexus}) // wakes the prober
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("the first answer was not announced")
	}
	began := time.Now()
	for asked.Load() < 2 {
		if time.Since(began) > probeRetry+5*time.Second {
			t.Fatalf("a registry that has just stopped answering was not asked again within %s", probeRetry+5*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(began); took < probeRetry-time.Second {
		t.Errorf("asked again after %s, want after %s", took, probeRetry)
	}
	time.Sleep(probeRetry + time.Second)
	if n := asked.Load(); n != 2 {
		t.Errorf("a registry that stays down was asked %d times before the resync, want 2", n)
	}
}
