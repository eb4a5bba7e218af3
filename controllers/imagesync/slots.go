package imagesync

import (
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

// slotWaiter is a copy waiting for a slot: start runs it, on a goroutine of its own, once
// it has one. Waiting costs no goroutine: thousands of ImageSyncs due at once are entries
// in this list until their turn.
type slotWaiter struct {
	namespace string
	start     func(release func())
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

// enqueue asks for a slot for a copy in namespace. start runs with it on a goroutine of its
// own and must call release when the copy ends (more calls do nothing). withdraw takes a
// copy that is still waiting out of the queue, so that it never starts, and says whether it
// was waiting.
func (f *fairSlots) enqueue(namespace string, start func(release func())) (withdraw func() bool) {
	w := &slotWaiter{namespace: namespace, start: start}
	f.mu.Lock()
	f.waiting = append(f.waiting, w)
	granted := f.dispatch()
	f.mu.Unlock()
	f.launch(granted)
	return func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, o := range f.waiting {
			if o == w {
				f.waiting = append(f.waiting[:i], f.waiting[i+1:]...)
				return true
			}
		}
		return false
	}
}

// launch starts the copies granted a slot.
func (f *fairSlots) launch(granted []*slotWaiter) {
	for _, w := range granted {
		go w.start(f.releaser(w.namespace))
	}
}

func (f *fairSlots) releaser(namespace string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.free++
			if f.held[namespace]--; f.held[namespace] <= 0 {
				delete(f.held, namespace)
			}
			granted := f.dispatch()
			f.mu.Unlock()
			f.launch(granted)
		})
	}
}

// dispatch grants free slots to waiters: of the namespaces under their limit, the one
// holding fewest, and in it the copy that has waited longest. It returns those granted, to
// be launched once f.mu (held) is released.
func (f *fairSlots) dispatch() []*slotWaiter {
	var granted []*slotWaiter
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
			break
		}
		w := f.waiting[best]
		f.waiting = append(f.waiting[:best], f.waiting[best+1:]...)
		f.free--
		f.held[w.namespace]++
		granted = append(granted, w)
	}
	return granted
}

// waitingCount returns how many copies wait for a slot (for tests and metrics).
func (f *fairSlots) waitingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiting)
}

// holding returns how many slots namespace holds (for tests and metrics).
func (f *fairSlots) holding(namespace string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[namespace]
}
