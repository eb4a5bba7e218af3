package shards_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/controllers/internal/shards"
	"github.com/regwire/regwire/internal/scheme"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

// c is an administrator's client of the control plane, which controlPlaneConfig reaches.
var (
	c                  client.Client
	controlPlaneConfig *rest.Config
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		cp, err := controlplane.Start(controlplane.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting the control plane:", err)
			return 1
		}
		defer func() { _ = cp.Stop() }()
		controlPlaneConfig = cp.Config
		if c, err = client.New(cp.Config, client.Options{Scheme: scheme.New()}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// timings are short, in the same proportions as the defaults.
var timings = shards.Timings{LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RenewInterval: 500 * time.Millisecond, Tick: 200 * time.Millisecond}

// replica is one Coordinator running until stopped.
type replica struct {
	*shards.Coordinator
	cancel context.CancelFunc
	done   chan struct{}
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shards-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func start(t *testing.T, ns, id string, n int, release bool, mutate func(*shards.Coordinator)) *replica {
	t.Helper()
	co := &shards.Coordinator{Client: c, Reader: c, APIReader: c, Namespace: ns, Name: "copies", Identity: id, Shards: n,
		Timings: timings, ReleaseOnCancel: release}
	if mutate != nil {
		mutate(co)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{Coordinator: co, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := co.Start(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// settled waits until the replicas hold every shard between them, each its share, and
// returns how long that took.
func settled(t *testing.T, n int, shares map[*replica]int) time.Duration {
	t.Helper()
	began := time.Now()
	testutil.Eventually(t, 30*time.Second, "the shards settle", func() error {
		var all []int
		for r, want := range shares {
			held := r.Held()
			if len(held) != want {
				return fmt.Errorf("%s holds %v, want %d shards", r.Identity, held, want)
			}
			all = append(all, held...)
		}
		slices.Sort(all)
		if len(all) != n || len(slices.Compact(all)) != n {
			return fmt.Errorf("held between them: %v", all)
		}
		return nil
	})
	return time.Since(began)
}

// neverShared fails the test if two replicas ever work in the same shard at once,
// sampling until the test ends.
func neverShared(t *testing.T, replicas ...*replica) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			owner := map[int]string{}
			for _, r := range replicas {
				for _, s := range r.Held() {
					if o, ok := owner[s]; ok {
						t.Errorf("shard %d held by %s and %s at once", s, o, r.Identity)
						return
					}
					owner[s] = r.Identity
				}
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func TestThreeReplicasShareTwelveShardsAndADeadOnesShareMovesAfterItsLease(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	a := start(t, ns, "replica-a", 12, true, nil)
	b := start(t, ns, "replica-b", 12, false, nil)
	cc := start(t, ns, "replica-c", 12, true, nil)
	neverShared(t, a, b, cc)
	settled(t, 12, map[*replica]int{a: 4, b: 4, cc: 4})

	// replica-b dies: nothing is released, its membership stops being renewed.
	b.stop()
	took := settled(t, 12, map[*replica]int{a: 6, cc: 6})
	if took < timings.LeaseDuration-timings.RenewInterval {
		t.Errorf("a dead replica's shards moved after %s, before its membership (%s) could have expired", took, timings.LeaseDuration)
	}
	if bound := timings.LeaseDuration + timings.RenewInterval + 3*timings.Tick + time.Second; took > bound {
		t.Errorf("a dead replica's shards moved after %s, want within %s", took, bound)
	}
	t.Logf("a dead replica's share moved in %s", took)
}

func TestAStoppingReplicaHandsItsShardsOverAtOnce(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	a := start(t, ns, "replica-a", 6, true, nil)
	b := start(t, ns, "replica-b", 6, true, nil)
	neverShared(t, a, b)
	settled(t, 6, map[*replica]int{a: 3, b: 3})
	b.stop()
	if took := settled(t, 6, map[*replica]int{a: 6}); took > timings.LeaseDuration/2 {
		t.Errorf("a stopping replica's shards moved after %s; released, they should move within a few ticks", took)
	}
	leases := &coordinationv1.LeaseList{}
	if err := c.List(context.Background(), leases, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		if l.Name == "copies-member-replica-b" {
			t.Errorf("the stopped replica's membership Lease is still there")
		}
	}
}

func TestAJoiningReplicaGetsItsShareOnlyOnceTheWorkInItHasEnded(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	var busy atomic.Bool
	busy.Store(true)
	var lost sync.Map
	a := start(t, ns, "replica-a", 4, true, func(co *shards.Coordinator) {
		co.Busy = func(s int) bool { _, gone := lost.Load(s); return gone && busy.Load() }
		co.OnChange = func(_ context.Context, _, l []int) {
			for _, s := range l {
				lost.Store(s, true)
			}
		}
	})
	settled(t, 4, map[*replica]int{a: 4})
	b := start(t, ns, "replica-b", 4, true, nil)
	neverShared(t, a, b)

	// replica-a stops working in two shards at once, but their copies still run: the
	// Leases stay its own, and replica-b waits.
	testutil.Eventually(t, 10*time.Second, "replica-a gives two shards up", func() error {
		if held := a.Held(); len(held) != 2 {
			return fmt.Errorf("replica-a holds %v", held)
		}
		return nil
	})
	time.Sleep(4 * timings.Tick)
	if held := b.Held(); len(held) != 0 {
		t.Fatalf("replica-b took %v while replica-a's work in them still ran", held)
	}
	leases := &coordinationv1.LeaseList{}
	if err := c.List(context.Background(), leases, client.InNamespace(ns), client.MatchingLabels{shards.LabelRole: "shard"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != "replica-a" {
			t.Errorf("Lease %s names %q while replica-a's work in it runs", l.Name, h)
		}
	}
	busy.Store(false)
	settled(t, 4, map[*replica]int{a: 2, b: 2})
}

func TestReplicasThatCutTheKeysDifferentlyTakeNothingNew(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	a := start(t, ns, "replica-a", 4, true, nil)
	settled(t, 4, map[*replica]int{a: 4})
	// A rolling update to 8 shards: the new replica waits while the old one lives.
	b := start(t, ns, "replica-b", 8, true, nil)
	time.Sleep(timings.LeaseDuration)
	if held := b.Held(); len(held) != 0 {
		t.Fatalf("a replica cutting keys into 8 shards took %v beside one cutting them into 4", held)
	}
	if held := a.Held(); len(held) != 4 {
		t.Fatalf("the old replica holds %v, want its 4 shards", held)
	}
	a.stop()
	settled(t, 8, map[*replica]int{b: 8})
}

func TestEveryKeyFallsIntoOneShardSpreadEvenly(t *testing.T) {
	t.Parallel()
	counts := make([]int, 12)
	for i := range 12000 {
		s := shards.Of(fmt.Sprintf("%08x-uid-%d", i*7919, i), 12)
		if s != shards.Of(fmt.Sprintf("%08x-uid-%d", i*7919, i), 12) {
			t.Fatal("a key's shard changed between calls")
		}
		counts[s]++
	}
	for s, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("shard %d has %d of 12,000 keys, want about 1,000: %v", s, n, counts)
		}
	}
}

// cutOff is a client whose writes fail once cut, as a replica's do when it loses the API
// server while it runs on.
type cutOff struct {
	client.Client
	cut atomic.Bool
}

func (c *cutOff) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if c.cut.Load() {
		return fmt.Errorf("connection refused")
	}
	return c.Client.Create(ctx, obj, opts...)
}

func (c *cutOff) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if c.cut.Load() {
		return fmt.Errorf("connection refused")
	}
	return c.Client.Update(ctx, obj, opts...)
}

func TestAReplicaCutOffFromTheAPIServerStopsWorkingBeforeAnotherTakesOver(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cut := &cutOff{Client: c}
	var lostAt atomic.Int64
	a := start(t, ns, "replica-a", 6, true, nil)
	b := start(t, ns, "replica-b", 6, true, func(co *shards.Coordinator) {
		co.Client = cut
		co.OnChange = func(_ context.Context, _, lost []int) {
			if len(lost) > 0 {
				lostAt.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
	})
	neverShared(t, a, b)
	settled(t, 6, map[*replica]int{a: 3, b: 3})

	cutAt := time.Now()
	cut.cut.Store(true)
	took := settled(t, 6, map[*replica]int{a: 6, b: 0})
	if lostAt.Load() == 0 {
		t.Fatal("the cut-off replica was never told to stop working in its shards")
	}
	stopped := time.Unix(0, lostAt.Load()).Sub(cutAt)
	if stopped > timings.RenewDeadline+2*timings.Tick {
		t.Errorf("the cut-off replica stopped working %s after its last chance to renew, want within its renew deadline %s", stopped, timings.RenewDeadline)
	}
	t.Logf("cut off: stopped working after %s; the other replica held everything after %s", stopped, took)
}

// lagging is a cache that has not caught up: until ready, it lists what it listed first.
type lagging struct {
	client.Reader
	mu    sync.Mutex
	first *coordinationv1.LeaseList
	until time.Time
}

func (l *lagging) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == nil {
		l.first = &coordinationv1.LeaseList{}
		if err := l.Reader.List(ctx, l.first, opts...); err != nil {
			return err
		}
	}
	if time.Now().Before(l.until) {
		l.first.DeepCopyInto(list.(*coordinationv1.LeaseList))
		return nil
	}
	return l.Reader.List(ctx, list, opts...)
}

func TestACacheBehindTheReplicasOwnTakesIsNoLoss(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	var losses atomic.Int64
	a := start(t, ns, "replica-a", 4, true, func(co *shards.Coordinator) {
		co.Reader = &lagging{Reader: c, until: time.Now().Add(10 * timings.Tick)}
		co.OnChange = func(_ context.Context, _, lost []int) { losses.Add(int64(len(lost))) }
	})
	settled(t, 4, map[*replica]int{a: 4})
	time.Sleep(12 * timings.Tick) // the cache catches up meanwhile
	if held := a.Held(); len(held) != 4 || losses.Load() != 0 {
		t.Errorf("holds %v after %d shards were lost to a cache that had not seen them taken", held, losses.Load())
	}
}
