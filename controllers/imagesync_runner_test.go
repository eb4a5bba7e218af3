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
	r := newSyncRunner(2)
	var running, peak atomic.Int64
	release := make(chan struct{})
	fn := func(ctx context.Context) ([]imagesync.Result, error) {
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
