// Package shards shares work among a manager's replicas through Leases: a keyspace is cut
// into a fixed number of shards, each replica holds a fair share of them, and work for a
// key is done only by the replica holding its shard. A replica that dies loses its shards
// to the others once its membership Lease expires; one that stops, or holds more than its
// share after a new replica joined, lets them go once its work in them has ended.
//
// Two kinds of Lease in the manager's namespace carry it, labelled LabelSet=<name>:
//
//   - <name>-member-<identity>, one per replica, renewed every RenewInterval: the
//     heartbeat. It is the only Lease written in steady state.
//   - <name>-shard-<i>, one per shard, naming its holder: written only when a shard
//     changes hands. A shard whose holder's membership has expired is free.
//
// Safety is leader election's (client-go's leaderelection, the same timings): a replica
// works in its shards only while its last renewal is younger than RenewDeadline, and
// another replica takes them only after seeing the membership unchanged for
// LeaseDuration by its own clock — longer than RenewDeadline plus one Tick.
package shards

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Labels and annotations of the Leases.
const (
	// LabelSet names the set a Lease belongs to (the Coordinator's Name).
	LabelSet = "regwire.dev/shard-set"
	// LabelRole is "member" or "shard".
	LabelRole = "regwire.dev/shard-role"
	// AnnotationCount is the number of shards a member cuts the keyspace into. Replicas
	// that disagree (a rolling update that changes it) take no new shard until the others
	// are gone: the same key would fall into different shards.
	AnnotationCount = "regwire.dev/shard-count"
)

// Timings, leader election's defaults in controller-runtime but for the renewal, which
// need not be more frequent: it is the only steady-state write.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRenewInterval = 5 * time.Second
	DefaultTick          = 2 * time.Second
)

// Timings of the Leases: see the package comment.
type Timings struct {
	// LeaseDuration is how long a membership not renewed keeps its shards.
	LeaseDuration time.Duration
	// RenewDeadline is how long after its last renewal a replica stops working in its
	// shards; shorter than LeaseDuration by more than a Tick.
	RenewDeadline time.Duration
	// RenewInterval is how often the membership is renewed.
	RenewInterval time.Duration
	// Tick is how often a replica settles its share.
	Tick time.Duration
}

// Coordinator holds this replica's share of the shards. It is a manager Runnable that runs
// on every replica (not only the leader).
type Coordinator struct {
	// Client writes the Leases; Reader lists them (the manager's cache, limited to the
	// Leases labelled LabelSet in Namespace). APIReader reads a Lease the cache holds an
	// old version of.
	Client    client.Client
	Reader    client.Reader
	APIReader client.Reader
	// Namespace holds the Leases; Name prefixes them.
	Namespace, Name string
	// Identity is this replica's (its Pod's name); unique among the replicas.
	Identity string
	// Shards is how many shards the keyspace is cut into; the same on every replica.
	Shards int
	// Timings: see the package comment (defaults above where zero).
	Timings
	// ReleaseOnCancel lets the shards go and deletes the membership when the manager
	// stops, so that the others take the shards at their next tick instead of after
	// LeaseDuration.
	ReleaseOnCancel bool
	// Busy reports whether work of shard s still runs here; a shard this replica gives up
	// is released only once it does not.
	Busy func(shard int) bool
	// OnChange is told about the shards this replica has come to hold and those it no
	// longer works in; it must stop the work of lost ones.
	OnChange func(ctx context.Context, gained, lost []int)
	// Now tells the time; tests may set it.
	Now func() time.Time

	mu       sync.Mutex
	held     map[int]bool // shards this replica holds and works in
	draining map[int]bool // held, no longer worked in, released once not Busy
	renewed  time.Time    // the last successful renewal of the membership
	// seen is when each Lease (by name) last changed, by this replica's clock.
	seen map[string]observation
	// taken is, per shard this replica took, the version of its Lease it replaced ("" for
	// one it created) and when: a cache still showing that version has not caught up
	// with the take, which is no loss.
	taken map[int]take
}

type take struct {
	replaced string
	at       time.Time
}

type observation struct {
	resourceVersion string
	at              time.Time
}

// Of returns the shard of key.
func Of(key string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(max(shards, 1)))
}

// Owns reports whether this replica may work on key now: it holds the key's shard and
// renewed its membership less than RenewDeadline ago.
func (c *Coordinator) Owns(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[Of(key, c.Shards)] && c.now().Sub(c.renewed) < c.RenewDeadline
}

// Held returns the shards this replica works in now, in order (none once its last renewal
// is RenewDeadline old).
func (c *Coordinator) Held() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	if c.now().Sub(c.renewed) >= c.RenewDeadline {
		return nil
	}
	for s := range c.held {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// holding returns the shards this replica holds and works in, however old its renewal.
func (c *Coordinator) holding() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, 0, len(c.held))
	for s := range c.held {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// NeedLeaderElection is false: every replica takes its share.
func (c *Coordinator) NeedLeaderElection() bool { return false }

func (c *Coordinator) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Coordinator) defaults() {
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline <= 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RenewInterval <= 0 {
		c.RenewInterval = DefaultRenewInterval
	}
	if c.Tick <= 0 {
		c.Tick = DefaultTick
	}
	if c.Busy == nil {
		c.Busy = func(int) bool { return false }
	}
	if c.OnChange == nil {
		c.OnChange = func(context.Context, []int, []int) {}
	}
}

// Start takes and keeps this replica's share until ctx is done.
func (c *Coordinator) Start(ctx context.Context) error {
	if c.Shards < 1 || c.Identity == "" {
		return fmt.Errorf("shards: %d shards and identity %q: want at least 1 and a name", c.Shards, c.Identity)
	}
	c.defaults()
	c.mu.Lock()
	c.held, c.draining, c.seen, c.taken = map[int]bool{}, map[int]bool{}, map[string]observation{}, map[int]take{}
	c.mu.Unlock()
	log := logf.FromContext(ctx).WithValues("shardSet", c.Name, "identity", c.Identity)
	ctx = logf.IntoContext(ctx, log)
	tick := time.NewTicker(c.Tick)
	defer tick.Stop()
	for {
		if err := c.step(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "Keeping the shards' Leases failed; trying again")
		}
		select {
		case <-ctx.Done():
			c.stop(ctx)
			return nil
		case <-tick.C:
		}
	}
}

// step renews the membership when due, then settles this replica's share: it drops shards
// another replica has taken, gives up those above its share (once their work ended) and
// takes free ones up to it.
func (c *Coordinator) step(ctx context.Context) error {
	now := c.now()
	var errs []error
	leases := &coordinationv1.LeaseList{}
	if err := c.Reader.List(ctx, leases, client.InNamespace(c.Namespace), client.MatchingLabels{LabelSet: c.Name}); err != nil {
		return fmt.Errorf("listing Leases: %w", err)
	}
	c.mu.Lock()
	due := now.Sub(c.renewed) >= c.RenewInterval
	c.mu.Unlock()
	if due {
		if err := c.renew(ctx, leases.Items); err != nil {
			errs = append(errs, fmt.Errorf("renewing membership: %w", err))
		} else {
			c.mu.Lock()
			c.renewed = now
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	fresh := now.Sub(c.renewed) < c.RenewDeadline
	c.mu.Unlock()
	if !fresh {
		// Another replica may take these shards LeaseDuration after the last renewal.
		c.lose(ctx, c.holding())
		return errors.Join(errs...)
	}
	members, shards, frozen := c.observe(now, leases.Items)
	var lost []int
	for _, s := range c.holding() {
		l := shards[s]
		if l != nil && holder(l) == c.Identity {
			continue
		}
		c.mu.Lock()
		tk, took := c.taken[s]
		c.mu.Unlock()
		if took && now.Sub(tk.at) < c.LeaseDuration && (l == nil && tk.replaced == "" || l != nil && l.ResourceVersion == tk.replaced) {
			continue // the cache has not seen this replica's take yet
		}
		lost = append(lost, s)
	}
	c.lose(ctx, lost)

	quota := c.quota(members)
	c.mu.Lock()
	var giveUp []int
	for s := c.Shards - 1; s >= 0 && len(c.held) > quota; s-- {
		if c.held[s] {
			delete(c.held, s)
			c.draining[s] = true
			giveUp = append(giveUp, s)
		}
	}
	draining := make([]int, 0, len(c.draining))
	for s := range c.draining {
		draining = append(draining, s)
	}
	have := len(c.held) + len(c.draining)
	c.mu.Unlock()
	if len(giveUp) > 0 {
		logf.FromContext(ctx).Info("Giving shards up to other replicas", "shards", giveUp, "share", quota)
		c.OnChange(ctx, nil, giveUp)
	}
	for _, s := range draining {
		if c.Busy(s) {
			continue
		}
		if err := c.release(ctx, shards[s]); err != nil {
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		delete(c.draining, s)
		c.mu.Unlock()
	}

	c.mu.Lock()
	mine := map[int]bool{}
	for s := range c.held {
		mine[s] = true
	}
	for s := range c.draining {
		mine[s] = true
	}
	c.mu.Unlock()
	live := map[string]bool{}
	for _, m := range members {
		live[m] = true
	}
	var gained []int
	// Start looking at a place of this replica's own, so replicas starting together
	// seldom reach for the same shard.
	start := Of(c.Identity, c.Shards)
	for i := 0; i < c.Shards; i++ {
		s := (start + i) % c.Shards
		l := shards[s]
		if mine[s] {
			continue
		}
		if l != nil && holder(l) == c.Identity {
			// Still named ours (this replica stopped working in it when a renewal was
			// late): work in it again, or let it go.
			if have < quota && !frozen {
				have++
				gained = append(gained, s)
			} else if !c.Busy(s) {
				if err := c.release(ctx, l); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if have >= quota || frozen || l != nil && holder(l) != "" && live[holder(l)] {
			continue
		}
		ok, err := c.acquire(ctx, s, l, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			have++
			gained = append(gained, s)
			tk := take{at: now}
			if l != nil {
				tk.replaced = l.ResourceVersion
			}
			c.mu.Lock()
			c.taken[s] = tk
			c.mu.Unlock()
		}
	}
	if len(gained) > 0 {
		c.mu.Lock()
		for _, s := range gained {
			c.held[s] = true
		}
		c.mu.Unlock()
		logf.FromContext(ctx).Info("Took shards", "shards", gained, "share", quota)
		c.OnChange(ctx, gained, nil)
	}
	return errors.Join(errs...)
}

// observe records when each Lease last changed, and returns the live members (this
// replica among them) sorted, the shard Leases by index, and whether a live member cuts
// the keyspace differently.
func (c *Coordinator) observe(now time.Time, items []coordinationv1.Lease) (members []string, shards map[int]*coordinationv1.Lease, frozen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	shards = map[int]*coordinationv1.Lease{}
	present := map[string]bool{}
	for i := range items {
		l := &items[i]
		present[l.Name] = true
		if o, ok := c.seen[l.Name]; !ok || o.resourceVersion != l.ResourceVersion {
			c.seen[l.Name] = observation{resourceVersion: l.ResourceVersion, at: now}
		}
		switch l.Labels[LabelRole] {
		case "shard":
			if s, err := strconv.Atoi(l.Labels[labelIndex]); err == nil && s >= 0 && s < c.Shards {
				shards[s] = l
			}
		case "member":
			id := holder(l)
			if id == c.Identity {
				continue
			}
			d := time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, int32(c.LeaseDuration/time.Second))) * time.Second
			if now.Sub(c.seen[l.Name].at) >= d {
				continue // not renewed for a whole lease: that replica is gone
			}
			if l.Annotations[AnnotationCount] != strconv.Itoa(c.Shards) {
				frozen = true // not one of this set's members: it does not share these shards
				continue
			}
			members = append(members, id)
		}
	}
	for name := range c.seen {
		if !present[name] {
			delete(c.seen, name) // a Lease made again is new: seen from when it appears
		}
	}
	members = append(members, c.Identity)
	slices.Sort(members)
	return members, shards, frozen
}

// labelIndex is a shard Lease's index.
const labelIndex = "regwire.dev/shard-index"

// quota is this replica's share: the shards spread as evenly as the members allow, the
// first members in name order holding one more.
func (c *Coordinator) quota(members []string) int {
	i := slices.Index(members, c.Identity)
	q := c.Shards / len(members)
	if i < c.Shards%len(members) {
		q++
	}
	return q
}

// lose stops working in shards (they are no longer this replica's, or may not be soon).
func (c *Coordinator) lose(ctx context.Context, shards []int) {
	if len(shards) == 0 {
		return
	}
	c.mu.Lock()
	for _, s := range shards {
		delete(c.held, s)
		delete(c.draining, s)
	}
	c.mu.Unlock()
	logf.FromContext(ctx).Info("Lost shards", "shards", shards)
	c.OnChange(ctx, nil, shards)
}

func holder(l *coordinationv1.Lease) string { return ptr.Deref(l.Spec.HolderIdentity, "") }

func (c *Coordinator) memberName() string { return c.Name + "-member-" + c.Identity }

func (c *Coordinator) shardName(s int) string { return fmt.Sprintf("%s-shard-%d", c.Name, s) }

func (c *Coordinator) labels(role string) map[string]string {
	return map[string]string{LabelSet: c.Name, LabelRole: role}
}

// renew writes the membership Lease's renewTime (creating it the first time), starting
// from the cached Lease; the API server is read only when the cache is behind.
func (c *Coordinator) renew(ctx context.Context, cached []coordinationv1.Lease) error {
	key := types.NamespacedName{Namespace: c.Namespace, Name: c.memberName()}
	var l *coordinationv1.Lease
	for i := range cached {
		if cached[i].Name == key.Name {
			l = cached[i].DeepCopy()
		}
	}
	for attempt := 0; ; attempt++ {
		now := metav1.NewMicroTime(c.now())
		var err error
		if l == nil {
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: c.labels("member"),
					Annotations: map[string]string{AnnotationCount: strconv.Itoa(c.Shards)}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &c.Identity, LeaseDurationSeconds: ptr.To(int32(c.LeaseDuration / time.Second)),
					AcquireTime: &now, RenewTime: &now},
			}
			err = c.Client.Create(ctx, l)
		} else {
			l.Spec.RenewTime = &now
			l.Spec.HolderIdentity = &c.Identity
			l.Spec.LeaseDurationSeconds = ptr.To(int32(c.LeaseDuration / time.Second))
			if l.Annotations == nil {
				l.Annotations = map[string]string{}
			}
			l.Annotations[AnnotationCount] = strconv.Itoa(c.Shards)
			err = c.Client.Update(ctx, l)
		}
		behind := apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
		if attempt > 0 || !behind {
			return err
		}
		// The cache is behind: read the Lease as it is.
		l = &coordinationv1.Lease{}
		if err := c.APIReader.Get(ctx, key, l); apierrors.IsNotFound(err) {
			l = nil
		} else if err != nil {
			return err
		}
	}
}

// acquire makes this replica shard s's holder: l is the Lease as listed (nil when there is
// none); a replica that got there first wins (the update's resourceVersion precondition).
func (c *Coordinator) acquire(ctx context.Context, s int, l *coordinationv1.Lease, now time.Time) (bool, error) {
	t := metav1.NewMicroTime(now)
	if l == nil {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.shardName(s), Labels: c.labels("shard")},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &c.Identity, AcquireTime: &t, LeaseTransitions: ptr.To[int32](0)},
		}
		l.Labels[labelIndex] = strconv.Itoa(s)
		err := c.Client.Create(ctx, l)
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return err == nil, err
	}
	l = l.DeepCopy()
	l.Spec.HolderIdentity = &c.Identity
	l.Spec.AcquireTime = &t
	l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	err := c.Client.Update(ctx, l)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return false, nil // another replica moved first; the next tick sees who
	}
	return err == nil, err
}

// release clears shard s's holder, if it is still this replica.
func (c *Coordinator) release(ctx context.Context, l *coordinationv1.Lease) error {
	if l == nil || holder(l) != c.Identity {
		return nil
	}
	l = l.DeepCopy()
	l.Spec.HolderIdentity = ptr.To("")
	err := c.Client.Update(ctx, l)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing Lease %s: %w", l.Name, err)
	}
	return nil
}

// stop ends the work in every shard and, with ReleaseOnCancel, lets them go and leaves:
// the shards' work is asked to end and waited for (up to RenewDeadline) first.
func (c *Coordinator) stop(parent context.Context) {
	log := logf.FromContext(parent)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.RenewDeadline)
	defer cancel()
	held := c.holding()
	c.mu.Lock()
	for s := range c.draining {
		held = append(held, s)
	}
	c.mu.Unlock()
	c.lose(ctx, c.holding())
	if !c.ReleaseOnCancel {
		return
	}
	for _, s := range held {
		for c.Busy(s) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	leases := &coordinationv1.LeaseList{}
	if err := c.Reader.List(ctx, leases, client.InNamespace(c.Namespace), client.MatchingLabels{LabelSet: c.Name, LabelRole: "shard"}); err != nil {
		log.Error(err, "Releasing shards failed; the others take them when the membership expires")
		return
	}
	for i := range leases.Items {
		if err := c.release(ctx, &leases.Items[i]); err != nil {
			log.Error(err, "Releasing a shard failed")
		}
	}
	member := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.memberName()}}
	if err := c.Client.Delete(ctx, member); client.IgnoreNotFound(err) != nil {
		log.Error(err, "Leaving the shard set failed")
	}
	log.Info("Released shards", "shards", held)
}
