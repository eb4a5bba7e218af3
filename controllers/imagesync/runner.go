package imagesync

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagecopy"
)

// syncRunner runs copies in the background, one at most per ImageSync, so that a long copy
// never holds a reconcile worker (and other ImageSyncs) hostage. A finished run is kept
// until the reconciler collects it, and announced on events so the object is reconciled.
//
// It is a manager Runnable: copies run under the context the manager starts it with (so
// only on the leader, and never before the manager has started), and stop with it; Start
// returns once every copy has ended.
type syncRunner struct {
	mu   sync.Mutex
	runs map[types.NamespacedName]*syncRun
	// ctx is the manager's, set by Start; runs asked for before then wait in pending.
	ctx     context.Context
	pending []func()
	stopped bool
	wg      sync.WaitGroup
	// copying counts the copies under way by ImageSync UID, cancelled ones until they
	// have ended: a replica gives a shard up only once none of its copies runs.
	copying map[types.UID]int
	// recorded is, per ImageSync, the last run whose results landed in status and when
	// it is due again: the cache may still hold the status from before that write, which
	// would make the run look due.
	recorded map[types.NamespacedName]recordedRun
	// leader is whether copies wait for the manager's leadership (false when replicas
	// share the copies by shard).
	leader bool

	events chan event.GenericEvent
	// slots bound the copies running at once across all ImageSyncs, fairly across
	// namespaces; a run waits in their queue for a slot (and can be cancelled there).
	slots *fairSlots
	// progressEvery is how often a run whose progress moved brings its ImageSync back to
	// show it in status.
	progressEvery time.Duration
}

// defaultProgressEvery is how often status shows the progress of a copy under way.
const defaultProgressEvery = 10 * time.Second

// defaultConcurrentSyncs is how many ImageSyncs copy at once.
const defaultConcurrentSyncs = 16

// syncRun is one copy of one ImageSync generation.
type syncRun struct {
	uid        types.UID
	generation int64
	// cancel stops the run; called with the runner's mu held.
	cancel    context.CancelFunc
	cancelled bool // before the run began
	done      bool
	started   time.Time
	finished  time.Time
	results   []imagecopy.Result
	// err is a failure before any tag was copied (listing tags, building the engine).
	err error
	// next is when the ImageSync is due again, set when the run is first recorded (a
	// record whose status patch failed is recorded again, and counted once).
	next time.Time
	// progress of the tags being copied, and whether it moved since it was last announced.
	progress map[string]v1alpha1.CopyProgress
	moved    bool
}

// recordedRun is a run recorded in status: its generation and when the next is due.
type recordedRun struct {
	uid        types.UID
	generation int64
	next       time.Time
}

// progressFunc receives a tag's copy progress (imagecopy.Options.Progress).
type progressFunc = func(tag string, complete, total int64)

// newSyncRunner runs up to concurrent copies at once (defaultConcurrentSyncs when not
// positive), at most perNamespace of them for one namespace (half when not positive).
func newSyncRunner(concurrent, perNamespace int, progressEvery time.Duration) *syncRunner {
	if concurrent < 1 {
		concurrent = defaultConcurrentSyncs
	}
	if progressEvery <= 0 {
		progressEvery = defaultProgressEvery
	}
	return &syncRunner{runs: map[types.NamespacedName]*syncRun{}, copying: map[types.UID]int{}, recorded: map[types.NamespacedName]recordedRun{}, leader: true,
		events: make(chan event.GenericEvent, 64), slots: newFairSlots(concurrent, perNamespace), progressEvery: progressEvery}
}

// NeedLeaderElection says whether copies run on the leader only.
func (s *syncRunner) NeedLeaderElection() bool { return s.leader }

// Start runs the copies asked for so far, and those asked for later, under ctx until it is
// done; then it waits for them to end.
func (s *syncRunner) Start(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	pending := s.pending
	s.pending = nil
	for _, enqueue := range pending {
		enqueue()
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// start runs fn for the ImageSync unless a run of the same generation is under way, and
// cancels a run of an older generation. Until it has a copy slot the run is an entry in
// the slots' queue — no goroutine, timer or copy of the object — so that thousands of
// ImageSyncs due at once cost little more than their list.
func (s *syncRunner) start(is *v1alpha1.ImageSync, fn func(ctx context.Context, progress progressFunc) ([]imagecopy.Result, error)) {
	key := types.NamespacedName{Namespace: is.Namespace, Name: is.Name}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if r, ok := s.runs[key]; ok {
		if !r.done && r.generation == is.Generation {
			return
		}
		r.cancel()
	}
	run := &syncRun{uid: is.UID, generation: is.Generation, started: time.Now()}
	s.runs[key] = run
	// Events need only the object's name.
	ref := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	begin := func(release func()) { // with a slot, on a goroutine of its own
		defer release()
		s.mu.Lock()
		if run.cancelled || s.stopped {
			s.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(s.ctx)
		run.cancel = cancel
		s.wg.Add(1)
		s.copying[run.uid]++
		s.mu.Unlock()
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			if s.copying[run.uid]--; s.copying[run.uid] == 0 {
				delete(s.copying, run.uid)
			}
			s.mu.Unlock()
		}()
		defer cancel()
		s.execute(ctx, key, run, ref, fn)
	}
	// Until it begins, cancelling a run (stop, a new generation) takes it out of the queue.
	var withdraw func() bool
	run.cancel = func() {
		run.cancelled = true
		if withdraw != nil {
			withdraw()
		}
	}
	enqueue := func() { withdraw = s.slots.enqueue(key.Namespace, begin) }
	if s.ctx == nil {
		s.pending = append(s.pending, enqueue)
		return
	}
	enqueue()
}

// execute runs one copy, which holds a slot: it runs fn and announces the finished run.
func (s *syncRunner) execute(ctx context.Context, key types.NamespacedName, run *syncRun, obj *v1alpha1.ImageSync,
	fn func(ctx context.Context, progress progressFunc) ([]imagecopy.Result, error)) {
	progress := func(tag string, complete, total int64) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if run.progress == nil {
			run.progress = map[string]v1alpha1.CopyProgress{}
		}
		run.progress[tag] = v1alpha1.CopyProgress{CompletedBytes: complete, TotalBytes: total}
		run.moved = true
	}
	ctx, cancel := context.WithCancel(ctx)
	var announcing sync.WaitGroup
	announcing.Go(func() { s.announceProgress(ctx, run, obj) })
	results, err := fn(ctx, progress)
	s.mu.Lock()
	run.results, run.err, run.done, run.finished = results, err, true, time.Now()
	current := s.runs[key] == run
	s.mu.Unlock()
	cancel()
	announcing.Wait()
	if current {
		select {
		case s.events <- event.GenericEvent{Object: obj}:
		case <-s.ctx.Done(): // the manager stops: nobody reads events any more
		}
	}
}

// announceProgress brings the run's ImageSync back every progressEvery while its progress
// moves, until the run ends.
func (s *syncRunner) announceProgress(ctx context.Context, run *syncRun, obj *v1alpha1.ImageSync) {
	tick := time.NewTicker(s.progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		moved := run.moved && !run.done
		run.moved = false
		s.mu.Unlock()
		if !moved {
			continue
		}
		select {
		case s.events <- event.GenericEvent{Object: obj}:
		default: // the queue is busy; the next tick tries again
			s.mu.Lock()
			run.moved = true
			s.mu.Unlock()
		}
	}
}

// progress returns the progress of the tags a copy of this generation has under way.
func (s *syncRunner) progress(key types.NamespacedName, generation int64) map[string]v1alpha1.CopyProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[key]
	if !ok || r.done || r.generation != generation {
		return nil
	}
	out := make(map[string]v1alpha1.CopyProgress, len(r.progress))
	for tag, p := range r.progress {
		out[tag] = p
	}
	return out
}

// running reports whether a copy of this generation is under way.
func (s *syncRunner) running(key types.NamespacedName, generation int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[key]
	return ok && !r.done && r.generation == generation
}

// finished returns a finished run of this generation. It is kept until forget: a status
// patch that fails must not lose the run's results, nor start the copy again early.
func (s *syncRunner) finished(key types.NamespacedName, generation int64) *syncRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[key]
	if !ok || !r.done || r.generation != generation {
		return nil
	}
	return r
}

// forget drops run, once its results are in the ImageSync's status, remembering when the
// next run is due.
func (s *syncRunner) forget(key types.NamespacedName, run *syncRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs[key] == run {
		delete(s.runs, key)
		s.recorded[key] = recordedRun{uid: run.uid, generation: run.generation, next: run.next}
	}
}

// notDueUntil returns when the run of this generation last recorded here is due again, if
// it is (stopOther has dropped a record of a former object of the same name).
func (s *syncRunner) notDueUntil(key types.NamespacedName, generation int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recorded[key]
	return r.next, ok && r.generation == generation
}

// stop cancels and forgets any run of the ImageSync.
func (s *syncRunner) stop(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.runs[key]; ok {
		r.cancel()
		delete(s.runs, key)
	}
	delete(s.recorded, key)
}

// stopWhere cancels and forgets the runs of the ImageSyncs whose UID matches.
func (s *syncRunner) stopWhere(match func(types.UID) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, r := range s.runs {
		if match(r.uid) {
			r.cancel()
			delete(s.runs, key)
		}
	}
	for key, r := range s.recorded {
		if match(r.uid) {
			delete(s.recorded, key)
		}
	}
}

// copyingWhere reports whether a copy of an ImageSync whose UID matches is under way
// (cancelled ones count until they have ended).
func (s *syncRunner) copyingWhere(match func(types.UID) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.copying {
		if match(uid) {
			return true
		}
	}
	return false
}

// stopOther cancels and forgets what the runner holds under key for another object of
// that name: an ImageSync deleted and created again before a reconcile saw it gone is
// another ImageSync, whose generation starts at 1 again.
func (s *syncRunner) stopOther(key types.NamespacedName, uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.runs[key]; ok && r.uid != uid {
		r.cancel()
		delete(s.runs, key)
	}
	if r, ok := s.recorded[key]; ok && r.uid != uid {
		delete(s.recorded, key)
	}
}
