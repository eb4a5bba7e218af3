package shards_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers"
	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/controllers/internal/shards"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/test/testutil"
)

// manifestReads counts, per source repository, the reads of its manifests by tag: one per
// tag and copy.
type manifestReads struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *manifestReads) of(repo string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[repo]
}

// countingSource is a reverse proxy in front of a registry that counts manifest reads by
// tag.
func countingSource(t *testing.T, registryURL string) (*httptest.Server, *manifestReads) {
	u, err := url.Parse(registryURL)
	if err != nil {
		t.Fatal(err)
	}
	reads := &manifestReads{n: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A copy asks for each tag once (then reads by digest).
		if repo, ref, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok && !strings.HasPrefix(ref, "sha256:") {
			reads.mu.Lock()
			reads.n[repo]++
			reads.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, reads
}

// startManager runs a regwire manager replica sharing copies in ns until the test ends or
// the returned function stops it.
func startManager(t *testing.T, ns, id string, keepShards bool) (stop func()) {
	t.Helper()
	cfg := controlPlaneConfig
	mgr, err := controllers.NewManager(cfg, controllers.Options{
		Namespace: ns, Agent: agentdaemonset.DefaultOptions("regwire:test"),
		CopyShards: 12, Identity: id, ShardTimings: timings, ShardsKeptOnStop: keepShards,
		CopyBounds: imagecopy.Bounds{SourceGuard: &registryhttp.DialGuard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}},
		Manager: ctrl.Options{
			Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			LeaderElection: true, LeaderElectionID: "regwire-manager.regwire.dev", LeaderElectionNamespace: ns,
			LeaderElectionReleaseOnCancel: true,
			LeaseDuration:                 ptr.To(timings.LeaseDuration), RenewDeadline: ptr.To(timings.RenewDeadline), RetryPeriod: ptr.To(timings.Tick),
			// Three managers in one process register the same controllers.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager %s: %v", id, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// holders returns each shard Lease's holder in ns.
func holders(t *testing.T, ns string) map[int]string {
	t.Helper()
	leases := &coordinationv1.LeaseList{}
	if err := c.List(context.Background(), leases, client.InNamespace(ns), client.MatchingLabels{shards.LabelSet: controllers.CopyShardSet, shards.LabelRole: "shard"}); err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for i := range leases.Items {
		var s int
		if _, err := fmt.Sscanf(leases.Items[i].Name, controllers.CopyShardSet+"-shard-%d", &s); err == nil {
			out[s] = ptr.Deref(leases.Items[i].Spec.HolderIdentity, "")
		}
	}
	return out
}

// shareOf counts the shards each replica holds.
func shareOf(h map[int]string) map[string]int {
	out := map[string]int{}
	for _, id := range h {
		out[id]++
	}
	return out
}

func TestThreeManagerReplicasCopyEachImageSyncOnceAndADeadOnesShareMoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	registry := testutil.StartRegistry(t, testutil.RegistryOptions{})
	source, reads := countingSource(t, registry.URL)
	sourceHost := source.Listener.Addr().String()

	stopped := map[string]func(){}
	for _, id := range []string{"manager-a", "manager-b", "manager-c"} {
		stopped[id] = startManager(t, ns, id, id == "manager-b")
	}
	testutil.Eventually(t, 60*time.Second, "three replicas hold 4 shards each", func() error {
		if s := shareOf(holders(t, ns)); s["manager-a"] != 4 || s["manager-b"] != 4 || s["manager-c"] != 4 {
			return fmt.Errorf("shards held: %v", s)
		}
		return nil
	})

	newSyncs := func(from, to int) []*v1alpha1.ImageSync {
		var out []*v1alpha1.ImageSync
		for i := from; i < to; i++ {
			testutil.PushImage(t, fmt.Sprintf("%s/src/app-%d:1.0", registry.Host, i), 256, 1)
			is := &v1alpha1.ImageSync{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%d", i)},
				Spec: v1alpha1.ImageSyncSpec{
					Source:   v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(fmt.Sprintf("%s/src/app-%d", sourceHost, i)), Tags: []string{"1.0"}},
					Target:   v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(fmt.Sprintf("%s/dst/app-%d", registry.Host, i))},
					Interval: &metav1.Duration{Duration: time.Hour},
				},
			}
			if err := c.Create(ctx, is); err != nil {
				t.Fatal(err)
			}
			out = append(out, is)
		}
		return out
	}
	synced := func(syncs []*v1alpha1.ImageSync, timeout time.Duration) {
		t.Helper()
		testutil.Eventually(t, timeout, "every ImageSync synced", func() error {
			for _, is := range syncs {
				got := &v1alpha1.ImageSync{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(is), got); err != nil {
					return err
				}
				if !apimeta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionSynced) {
					return fmt.Errorf("%s is not synced: %v", is.Name, got.Status.Conditions)
				}
			}
			return nil
		})
	}
	copiedOnce := func(syncs []*v1alpha1.ImageSync) {
		t.Helper()
		for _, is := range syncs {
			repo := strings.TrimPrefix(string(is.Spec.Source.Image), sourceHost+"/")
			if n := reads.of(repo); n != 1 {
				t.Errorf("%s: the source's manifests were read %d times, want one copy by one replica", is.Name, n)
			}
		}
	}

	first := newSyncs(0, 24)
	synced(first, 60*time.Second)
	copiedOnce(first)

	// manager-b dies with its shards: the other two take them once its membership has
	// expired, and copy the ImageSyncs created in them meanwhile.
	before := holders(t, ns)
	stopped["manager-b"]()
	died := time.Now()
	second := newSyncs(24, 48)
	var inDead []*v1alpha1.ImageSync
	for _, is := range second {
		if before[shards.Of(string(is.UID), 12)] == "manager-b" {
			inDead = append(inDead, is)
		}
	}
	if len(inDead) == 0 {
		t.Fatal("no new ImageSync fell into the dead replica's shards; the test proves nothing")
	}
	testutil.Eventually(t, 60*time.Second, "the two replicas left hold 6 shards each", func() error {
		if s := shareOf(holders(t, ns)); s["manager-a"] != 6 || s["manager-c"] != 6 {
			return fmt.Errorf("shards held: %v", s)
		}
		return nil
	})
	moved := time.Since(died)
	synced(inDead, 60*time.Second)
	tookOver := time.Since(died)
	synced(second, 60*time.Second)
	copiedOnce(second)
	copiedOnce(first) // none copied again by the replica that took its shard
	if bound := timings.LeaseDuration + timings.RenewInterval + 5*timings.Tick; moved > bound+2*time.Second {
		t.Errorf("the dead replica's shards moved after %s, want within %s", moved, bound)
	}
	t.Logf("%d of 24 new ImageSyncs fell into the dead replica's shards: shards moved after %s, those ImageSyncs synced %s after the death",
		len(inDead), moved.Round(time.Millisecond), tookOver.Round(time.Millisecond))
}
