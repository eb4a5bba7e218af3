package controllers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagesync"
)

func TestRunnerBoundsConcurrentCopiesAndCancelsWaitingOnes(t *testing.T) {
	t.Parallel()
	r := newSyncRunner(2, 0)
	var running, peak atomic.Int64
	release := make(chan struct{})
	fn := func(ctx context.Context, _ progressFunc) ([]imagesync.Result, error) {
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
	time.Sleep(200 * time.Millisecond)
	if got := running.Load(); got != 2 {
		t.Fatalf("%d copies running, want the limit of 2", got)
	}
	// Stopping the waiting one frees nothing and never runs it.
	r.stop(objectKey("ns", "c"))
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
	r := newSyncRunner(1, 20*time.Millisecond)
	is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Generation: 3}}
	report := make(chan progressFunc)
	release := make(chan struct{})
	r.start(is, func(ctx context.Context, progress progressFunc) ([]imagesync.Result, error) {
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
	if got := r.progress(objectKey("ns", "p"), 3); got["1.0"] != (v1alpha1.CopyProgress{CompletedBytes: 10, TotalBytes: 100}) {
		t.Errorf("progress %v", got)
	}
	if got := r.progress(objectKey("ns", "p"), 2); got != nil {
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
