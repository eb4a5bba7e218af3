package imagesync

import (
	"context"
	"testing"
	"time"
)

// acquire waits for a slot for a copy in namespace, or gives up when ctx ends first.
func (f *fairSlots) acquire(ctx context.Context, namespace string) (release func(), err error) {
	granted := make(chan func(), 1)
	withdraw := f.enqueue(namespace, func(release func()) { granted <- release })
	select {
	case release := <-granted:
		return release, nil
	case <-ctx.Done():
	}
	if !withdraw() { // granted meanwhile: hand it on
		(<-granted)()
	}
	return nil, ctx.Err()
}

// take asks for n slots for namespace in the background and returns the channel their
// releases arrive on as they are granted.
func take(ctx context.Context, f *fairSlots, namespace string, n int) <-chan func() {
	granted := make(chan func(), n)
	for range n {
		go func() {
			if release, err := f.acquire(ctx, namespace); err == nil {
				granted <- release
			}
		}()
	}
	return granted
}

// receive waits for n grants.
func receive(t *testing.T, granted <-chan func(), n int, what string) []func() {
	t.Helper()
	var out []func()
	for len(out) < n {
		select {
		case r := <-granted:
			out = append(out, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: %d slots granted, want %d", what, len(out), n)
		}
	}
	return out
}

// none asserts that no more grants arrive.
func none(t *testing.T, granted <-chan func(), what string) {
	t.Helper()
	select {
	case <-granted:
		t.Fatalf("%s got a slot", what)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestOneNamespaceTakesAtMostHalfOfTheSlotsByDefault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFairSlots(16, 0)
	a := take(ctx, f, "team-a", 16)
	receive(t, a, 8, "team-a")
	none(t, a, "team-a beyond half of the slots")
	b := take(ctx, f, "team-b", 1)
	receive(t, b, 1, "team-b while team-a waits at its limit")
	if got := f.holding("team-a"); got != 8 {
		t.Errorf("team-a holds %d slots, want 8", got)
	}
}

func TestAFreedSlotGoesToTheWaitingNamespaceThatHoldsFewest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFairSlots(3, 3)
	a := take(ctx, f, "team-a", 3)
	held := receive(t, a, 3, "team-a")
	moreA := take(ctx, f, "team-a", 2) // team-a's copies wait first
	time.Sleep(50 * time.Millisecond)
	b := take(ctx, f, "team-b", 1)
	none(t, b, "team-b while every slot is held")
	held[0]()
	receive(t, b, 1, "team-b, holding none, when team-a freed a slot")
	none(t, moreA, "team-a, holding two, while team-b held none")
}

func TestAWaitingCopyThatGivesUpHoldsNoSlot(t *testing.T) {
	t.Parallel()
	f := newFairSlots(1, 1)
	release, err := f.acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.acquire(ctx, "b"); err == nil {
		t.Fatal("a second copy got the only slot")
	}
	release()
	release() // twice is once
	if got := f.holding("a") + f.holding("b"); got != 0 || f.free != 1 {
		t.Fatalf("after every copy ended: %d held, %d free, want 0 and 1", got, f.free)
	}
}
