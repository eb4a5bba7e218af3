package imagesync

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

func TestRunnerBoundsConcurrentCopiesAndCancelsWaitingOnes(t *testing.T) {
	t.Parallel()
	r := startedRunner(t, 2, 0)
	var running, peak atomic.Int64
	release := make(chan struct{})
	fn := func(ctx context.Context, _ progressFunc) ([]imagecopy.Result, error) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer running.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}
	for _, name := range []string{"a", "b", "c"} {
		r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Generation: 1}}, fn)
	}
	testutil.Eventually(t, 5*time.Second, "two copies running", func() error {
		if got := running.Load(); got != 2 {
			return fmt.Errorf("%d copies running, want the limit of 2", got)
		}
		return nil
	})
	// The third waits for a slot: still two running a while later.
	time.Sleep(200 * time.Millisecond)
	if got := running.Load(); got != 2 {
		t.Fatalf("%d copies running, want the limit of 2", got)
	}
	// Stopping the waiting one frees nothing and never runs it.
	r.stop(key("c"))
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency %d, want 2", peak.Load())
	}
}

func TestRunnerAnnouncesProgressOnlyWhenItMoves(t *testing.T) {
	t.Parallel()
	r := startedRunner(t, 1, 20*time.Millisecond)
	is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Generation: 3}}
	report := make(chan progressFunc)
	release := make(chan struct{})
	r.start(is, func(ctx context.Context, progress progressFunc) ([]imagecopy.Result, error) {
		report <- progress
		<-release
		return nil, nil
	})
	progress := <-report
	progress("1.0", 10, 100)
	select {
	case ev := <-r.events:
		if ev.Object.GetName() != "p" {
			t.Fatalf("event for %s", ev.Object.GetName())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("moved progress was never announced")
	}
	if got := r.progress(key("p"), 3); got["1.0"] != (v1alpha1.CopyProgress{CompletedBytes: 10, TotalBytes: 100}) {
		t.Errorf("progress %v", got)
	}
	if got := r.progress(key("p"), 2); got != nil {
		t.Errorf("progress of another generation: %v", got)
	}
	// Progress that does not move is not announced again.
	select {
	case <-r.events:
		t.Fatal("progress that did not move was announced")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-r.events: // the finished run
	case <-time.After(5 * time.Second):
		t.Fatal("the finished run was not announced")
	}
}

func TestRunnerRunsUnderTheManagerAndStopsWithIt(t *testing.T) {
	t.Parallel()
	r := newSyncRunner(2, 2, 0)
	started := make(chan string, 3)
	fn := func(ctx context.Context, _ progressFunc) ([]imagecopy.Result, error) {
		started <- "started"
		<-ctx.Done()
		return nil, ctx.Err()
	}
	// Asked for before the manager has started: waits for it; one stopped meanwhile never runs.
	r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "early", Generation: 1}}, fn)
	r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "dropped", Generation: 1}}, fn)
	r.stop(key("dropped"))
	select {
	case <-started:
		t.Fatal("a copy started before the manager started the runner")
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "late", Generation: 1}}, fn)
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("copies did not start once the manager started the runner")
		}
	}
	select {
	case <-started:
		t.Fatal("a copy stopped before the manager started ran anyway")
	case <-time.After(100 * time.Millisecond):
	}
	// The manager stops: both copies are cancelled, and Start returns once they ended.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after the manager stopped")
	}
	if r.running(key("early"), 1) || r.running(key("late"), 1) {
		t.Error("a copy still runs after Start returned")
	}
	// Nothing starts after the manager stopped.
	r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "after", Generation: 1}}, fn)
	if r.running(key("after"), 1) {
		t.Error("a copy was started after the manager stopped")
	}
}

// startedRunner is a runner whose manager has started; it stops when the test ends.
func startedRunner(t *testing.T, concurrent int, progressEvery time.Duration) *syncRunner {
	t.Helper()
	r := newSyncRunner(concurrent, concurrent, progressEvery)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

// key names an ImageSync of the tests' namespace.
func key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: "ns", Name: name}
}

// TestWaitingRunsCostNoGoroutine: 2,000 ImageSyncs due at once while every slot is held
// wait as entries in the slots' queue, not as goroutines (each with a timer and a copy of
// its object); stopped, they leave the queue and never run.
func TestWaitingRunsCostNoGoroutine(t *testing.T) {
	t.Parallel()
	r := startedRunner(t, 1, 0)
	hold := make(chan struct{})
	var ran atomic.Int64
	r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "holder", Generation: 1}},
		func(ctx context.Context, _ progressFunc) ([]imagecopy.Result, error) {
			select {
			case <-hold:
			case <-ctx.Done():
			}
			return nil, nil
		})
	testutil.Eventually(t, 5*time.Second, "the slot held", func() error {
		if r.slots.holding("ns") != 1 {
			return fmt.Errorf("the only slot is not held yet")
		}
		return nil
	})
	before := runtime.NumGoroutine()
	for i := range 2000 {
		r.start(&v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprint(i), Generation: 1}},
			func(context.Context, progressFunc) ([]imagecopy.Result, error) { ran.Add(1); return nil, nil })
	}
	if grown := runtime.NumGoroutine() - before; grown > 20 {
		t.Errorf("2,000 waiting runs added %d goroutines", grown)
	}
	if n := r.slots.waitingCount(); n != 2000 {
		t.Fatalf("%d runs wait for a slot, want 2,000", n)
	}
	for i := range 2000 {
		r.stop(types.NamespacedName{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprint(i)})
	}
	if n := r.slots.waitingCount(); n != 0 {
		t.Errorf("%d stopped runs still wait", n)
	}
	close(hold)
	time.Sleep(100 * time.Millisecond)
	if n := ran.Load(); n != 0 {
		t.Errorf("%d stopped runs ran", n)
	}
}
