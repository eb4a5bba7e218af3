package nodeagent_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/nodeagent"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestAChangeReachesTheFilesWhileTheRegistryKeepsTheProbeWaiting: the mirror's registry
// accepts connections and never answers, so each probe takes its whole timeout. A change
// published while the node probes reaches the hosts file at once: the files never wait for
// a registry; the report does, and then says the registry did not answer.
func TestAChangeReachesTheFilesWhileTheRegistryKeepsTheProbeWaiting(t *testing.T) {
	ctx := context.Background()
	const ns = "silent-registry"
	env.CreateNamespace(t, ns, nil)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan struct{}, 1)
	var held []net.Conn // open, never answered; closed when the test ends
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	}()
	n := env.StartNodeIn(t, ns, "node-silent", nil, nil)

	publish := func(gen int64, ip string) {
		t.Helper()
		rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "silent", Generation: gen}, Spec: v1alpha1.RegistryMirrorSpec{
			Host: "silent.local", Endpoint: "https://" + silent.Addr().String(),
			HostAliases: []v1alpha1.HostAlias{{IP: ip, Hostnames: []v1alpha1.Hostname{"silent.local"}}},
		}}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "silent", Labels: map[string]string{nodeconfig.PublishedLabel: "true"}}}
		if _, err := controllerutil.CreateOrUpdate(ctx, env, cm, func() error {
			cm.Data = map[string]string{nodeconfig.PublishedKey: nodeconfig.Publish(rm, nil, "").Encode()}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	hostsHas := func(ip string, within time.Duration) time.Duration {
		t.Helper()
		began := time.Now()
		testutil.Eventually(t, within, "the hosts file names "+ip, func() error {
			if got := n.Snapshot(t)["<hosts file>"]; !strings.Contains(got, ip+"\tsilent.local") {
				return fmt.Errorf("hosts file:\n%s", got)
			}
			return nil
		})
		return time.Since(began)
	}
	publish(1, "10.9.0.1")
	hostsHas("10.9.0.1", 10*time.Second)
	select {
	case <-accepted: // the probe is under way, and will wait its whole timeout
	case <-time.After(10 * time.Second):
		t.Fatal("the node never probed the registry")
	}
	publish(2, "10.9.0.2")
	if took := hostsHas("10.9.0.2", probe.Timeout); took > probe.Timeout/2 {
		t.Errorf("the change reached the hosts file after %s, behind a probe (timeout %s)", took, probe.Timeout)
	}

	envtest.Eventually(t, func() error {
		rn := &v1alpha1.RegistryNode{}
		if err := env.Get(ctx, client.ObjectKey{Name: "node-silent"}, rn); err != nil {
			return err
		}
		for _, m := range rn.Status.Mirrors {
			if m.Name == "silent" && m.ObservedGeneration == 2 && m.Probe != nil && !m.Probe.Reachable && m.Probe.Error != "" {
				return nil
			}
		}
		return fmt.Errorf("the report does not say the registry did not answer: %+v", rn.Status.Mirrors)
	})
}

// TestAnAgentWritesItsFilesAtOnceAndItsReportAtItsTurn: with reports spread over a window,
// a change reaches the node's files at once and its report after the node's own delay.
func TestAnAgentWritesItsFilesAtOnceAndItsReportAtItsTurn(t *testing.T) {
	filesAtOnceReportAtTurn(t, "spread-reports", 4*time.Second, 0)
}

// TestAMirrorOfALargeFleetSpreadsItsNodesReportsOverTheWindowItPublishes: an agent that
// would report at once reports at its turn of the longer window a mirror publishes.
func TestAMirrorOfALargeFleetSpreadsItsNodesReportsOverTheWindowItPublishes(t *testing.T) {
	filesAtOnceReportAtTurn(t, "published-window", 0, 6*time.Second)
}

// filesAtOnceReportAtTurn starts an agent spreading its reports over agentSpread, publishes
// a mirror with report window published, and checks the files come at once and the report
// at the node's turn of the longer of the two.
func filesAtOnceReportAtTurn(t *testing.T, ns string, agentSpread, published time.Duration) {
	t.Helper()
	ctx := context.Background()
	spread := max(agentSpread, published)
	env.CreateNamespace(t, ns, nil)
	name := "node-" + ns
	n := agenttest.Start(t, env.Config, env.Client, name, agenttest.Options{Namespace: ns, HostsContent: envtest.BaseHosts,
		Resync: time.Hour, ReportSpread: agentSpread})

	rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: ns, Generation: 1}, Spec: v1alpha1.RegistryMirrorSpec{
		Host: v1alpha1.RegistryHost(ns + ".local"), Endpoint: "https://127.0.0.1:1",
		HostAliases: []v1alpha1.HostAlias{{IP: "10.9.1.1", Hostnames: []v1alpha1.Hostname{v1alpha1.Hostname(ns + ".local")}}},
	}}
	p := nodeconfig.Publish(rm, nil, "")
	p.ReportWindowSeconds = int32(published / time.Second)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ns, Labels: map[string]string{nodeconfig.PublishedLabel: "true"}},
		Data: map[string]string{nodeconfig.PublishedKey: p.Encode()}}
	if err := env.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.Eventually(t, 3*time.Second, "the hosts file", func() error {
		if got := n.Snapshot(t)["<hosts file>"]; !strings.Contains(got, "10.9.1.1\t"+ns+".local") {
			return fmt.Errorf("hosts file:\n%s", got)
		}
		return nil
	})
	filesAt := time.Now()
	testutil.Eventually(t, spread+5*time.Second, "the report", func() error {
		rn := &v1alpha1.RegistryNode{}
		if err := env.Get(ctx, client.ObjectKey{Name: name}, rn); err != nil {
			return err
		}
		if len(rn.Status.Mirrors) == 0 || rn.Status.Mirrors[0].ObservedGeneration != 1 {
			return fmt.Errorf("report: %+v", rn.Status.Mirrors)
		}
		return nil
	})
	reportedAt := time.Now()
	// The report came at the node's turn: its next slot on the clock after the agent saw
	// the change (NextReport) — the one after the publish, or the next when the agent
	// saw it only after that one — within the polling's lag.
	due := nodeagent.NextReport(name, spread, start)
	if reportedAt.Sub(due) > spread {
		due = due.Add(spread)
	}
	if lag := reportedAt.Sub(due); filesAt.Sub(start) > 3*time.Second || lag < 0 || lag > time.Second {
		t.Errorf("files after %s, report at %s; want the files at once and the report at the node's turn, %s (phase %s of %s)",
			filesAt.Sub(start), reportedAt.Format("15:04:05.000"), due.Format("15:04:05.000"), nodeagent.ReportDelay(name, spread), spread)
	}
	t.Logf("files after %s, report %s after them at the node's turn (phase %s of %s)", filesAt.Sub(start).Round(time.Millisecond),
		reportedAt.Sub(filesAt).Round(time.Millisecond), nodeagent.ReportDelay(name, spread).Round(time.Millisecond), spread)
}

func TestANodeReportsAtMostOnceAWindowHoweverManyChangesCome(t *testing.T) {
	t.Parallel()
	const spread = 50 * time.Second
	start := time.Unix(1_700_000_000, 123)
	for i := range 200 {
		node := fmt.Sprintf("node-%d", i)
		// A change every 1.3 s for two minutes: each report is due at the node's next
		// slot after the change that found it idle.
		var reports []time.Time
		var due time.Time
		for c := start; c.Before(start.Add(2 * time.Minute)); c = c.Add(1300 * time.Millisecond) {
			if !due.IsZero() && !c.Before(due) {
				reports, due = append(reports, due), time.Time{}
			}
			if due.IsZero() {
				due = nodeagent.NextReport(node, spread, c)
				if due.Before(c) || !due.Before(c.Add(spread)) {
					t.Fatalf("%s: a report at %s due at %s, outside the window that follows", node, c, due)
				}
			}
		}
		for k := 1; k < len(reports); k++ {
			if gap := reports[k].Sub(reports[k-1]); gap < spread {
				t.Fatalf("%s reported twice %s apart, within one %s window", node, gap, spread)
			}
		}
	}
}

func TestReportDelaysSpreadOverTheWindow(t *testing.T) {
	t.Parallel()
	const spread = 5 * time.Second
	buckets := make([]int, 5)
	for i := range 5000 {
		d := nodeagent.ReportDelay(fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", i/250, i%250), spread)
		if d < 0 || d >= spread {
			t.Fatalf("delay %s outside [0, %s)", d, spread)
		}
		buckets[d/time.Second]++
	}
	for s, n := range buckets {
		if n < 800 || n > 1200 {
			t.Errorf("second %d of the window holds %d of 5,000 nodes' reports, want about 1,000: %v", s, n, buckets)
		}
	}
	if nodeagent.ReportDelay("node-a", 0) != 0 {
		t.Error("no spread should mean no delay")
	}
}
