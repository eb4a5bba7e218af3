//go:build scale

package scale

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// changeStats are the latencies of a run of mirror changes: to the file on every real
// node, and to the published ConfigMap (the manager's part).
type changeStats struct {
	changes         int
	samples         []time.Duration
	published       []time.Duration
	p50, p99, worst time.Duration
	// took is from the first change to the last on every real node; reports the agents'
	// reports (RegistryNode writes) meanwhile; window the report window the mirror
	// published; allReported from the last change to every node's report of it.
	took, allReported time.Duration
	reports           float64
	window            time.Duration
}

func (s changeStats) String() string {
	out := fmt.Sprintf("%d changes, %d samples: p50 %s, p99 %s, max %s", s.changes, len(s.samples),
		s.p50.Round(time.Millisecond), s.p99.Round(time.Millisecond), s.worst.Round(time.Millisecond))
	if n := len(s.published); n > 0 {
		out += fmt.Sprintf("; published after median %s, max %s", s.published[n/2].Round(time.Millisecond), s.published[n-1].Round(time.Millisecond))
	}
	return out
}

// reporting says how the nodes reported meanwhile.
func (s changeStats) reporting() string {
	return fmt.Sprintf("%.0f reports in %s (%.0f/s) over the published window of %s; every node's report of the last change after %s",
		s.reports, s.took.Round(time.Second), s.reports/s.took.Seconds(), s.window, s.allReported.Round(time.Second))
}

// mirrorChanges changes the mirror's host alias address for changes from..to, one after
// another, each once every real node's hosts file has the last, and measures each node.
// Then it waits for every node's report of the last (ready of total nodes ready).
func mirrorChanges(t *testing.T, ctx context.Context, cfg *rest.Config, k8s client.Client, fleet []*agenttest.Node, published *publishWatch, from, to, ready, total int) changeStats {
	t.Helper()
	var st changeStats
	begin, w0 := time.Now(), testutil.APIWrites(t, cfg)
	var changed time.Time
	for c := from; c <= to; c++ {
		ip := fmt.Sprintf("10.0.%d.%d", c/250, c%250+1)
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := &v1alpha1.RegistryMirror{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: "scale"}, cur); err != nil {
				return err
			}
			cur.Spec.HostAliases[0].IP = ip
			return k8s.Update(ctx, cur)
		}))
		changed = time.Now()
		pending := slices.Clone(fleet)
		for len(pending) > 0 {
			if time.Since(changed) > time.Minute {
				t.Fatalf("change %d: %d nodes still lack %s after a minute", c, len(pending), ip)
			}
			next := pending[:0]
			for _, n := range pending {
				b, _ := os.ReadFile(n.HostsFile)
				if strings.Contains(string(b), ip+"\t") || strings.Contains(string(b), ip+" ") {
					st.samples = append(st.samples, time.Since(changed))
				} else {
					next = append(next, n)
				}
			}
			pending = next
			time.Sleep(5 * time.Millisecond)
		}
		if at, ok := published.at(ip); ok {
			// Seen before the update's answer came back counts as at once.
			st.published = append(st.published, max(at.Sub(changed), 0))
		}
		st.changes++
	}
	st.took = time.Since(begin)
	st.reports = testutil.APIWrites(t, cfg)["registrynodes"] - w0["registrynodes"]
	testutil.Eventually(t, 5*time.Minute, "every node's report of the last change", func() error { return mirrorReady(ctx, k8s, ready, total) })
	st.allReported = time.Since(changed)
	cm := &corev1.ConfigMap{}
	must(t, k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: nodeconfig.PublishedName("scale")}, cm))
	p, _, err := nodeconfig.FromConfigMap(cm)
	must(t, err)
	st.window = p.ReportWindow()
	slices.Sort(st.samples)
	slices.Sort(st.published)
	pct := func(p float64) time.Duration {
		return st.samples[min(len(st.samples)-1, int(p*float64(len(st.samples))))]
	}
	st.p50, st.p99, st.worst = pct(0.5), pct(0.99), st.samples[len(st.samples)-1]
	return st
}
