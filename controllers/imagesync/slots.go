package imagesync

import (
	"context"
	"sync"
)

// fairSlots hands out the copy slots that ImageSyncs share, fairly across namespaces: a
// namespace holds at most perNamespace of them at once, so that one tenant's copies
// (trickling, huge, or merely many) always leave slots for the others; and a slot that
// frees up goes to the waiting namespace that holds fewest, the longest waiting first.
type fairSlots struct {
	mu           sync.Mutex
	free         int
	perNamespace int
	held         map[string]int
	waiting      []*slotWaiter // in the order they came
}

// slotWaiter is a copy waiting for a slot; granted is closed when it has one.
type slotWaiter struct {
	namespace string
	granted   chan struct{}
}

// newFairSlots returns total slots, at most perNamespace of them per namespace (half of
// them, at least one, when perNamespace is not positive).
func newFairSlots(total, perNamespace int) *fairSlots {
	total = max(total, 1)
	if perNamespace < 1 {
		perNamespace = max(total/2, 1)
	}
	return &fairSlots{free: total, perNamespace: min(perNamespace, total), held: map[string]int{}}
}

// acquire waits for a slot for a copy in namespace; release gives it back. It fails only
// when ctx ends first.
func (f *fairSlots) acquire(ctx context.Context, namespace string) (release func(), err error) {
	w := &slotWaiter{namespace: namespace, granted: make(chan struct{})}
	f.mu.Lock()
	f.waiting = append(f.waiting, w)
	f.dispatch()
	f.mu.Unlock()
	select {
	case <-w.granted:
		return f.releaser(namespace), nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-w.granted: // granted meanwhile: hand it on
		f.put(namespace)
	default:
		for i, o := range f.waiting {
			if o == w {
				f.waiting = append(f.waiting[:i], f.waiting[i+1:]...)
				break
			}
		}
	}
	return nil, ctx.Err()
}

func (f *fairSlots) releaser(namespace string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.put(namespace)
		})
	}
}

// put returns a slot of namespace and hands it on; f.mu is held.
func (f *fairSlots) put(namespace string) {
	f.free++
	if f.held[namespace]--; f.held[namespace] <= 0 {
		delete(f.held, namespace)
	}
	f.dispatch()
}

// dispatch grants free slots to waiters: of the namespaces under their limit, the one
// holding fewest, and in it the copy that has waited longest; f.mu is held.
func (f *fairSlots) dispatch() {
	for f.free > 0 {
		best := -1
		for i, w := range f.waiting {
			n := f.held[w.namespace]
			if n >= f.perNamespace {
				continue
			}
			if best < 0 || n < f.held[f.waiting[best].namespace] {
				best = i
			}
		}
		if best < 0 {
			return
		}
		w := f.waiting[best]
		f.waiting = append(f.waiting[:best], f.waiting[best+1:]...)
		f.free--
		f.held[w.namespace]++
		close(w.granted)
	}
}

// holding returns how many slots namespace holds (for tests and metrics).
func (f *fairSlots) holding(namespace string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[namespace]
}
