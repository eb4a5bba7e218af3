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
	// A node whose turn comes late in the window, so that "at once" and "at its turn"
	// differ by seconds.
	name := ""
	for i := 0; name == ""; i++ {
		if n := fmt.Sprintf("node-%s-%d", ns, i); nodeagent.ReportDelay(n, spread) > spread*3/4 {
			name = n
		}
	}
	delay := nodeagent.ReportDelay(name, spread)
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
	files := time.Since(start)
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
	reported := time.Since(start)
	if files >= delay || reported < delay {
		t.Errorf("files after %s, report after %s; want the files at once and the report at the node's turn, %s", files, reported, delay)
	}
	t.Logf("files after %s, report after %s (the node's turn: %s of %s)", files.Round(time.Millisecond), reported.Round(time.Millisecond), delay.Round(time.Millisecond), spread)
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
