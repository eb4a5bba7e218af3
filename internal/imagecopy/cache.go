package imagecopy

import (
	"context"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regwire/regwire/internal/registryhttp"
)

// Cache is what Engines remember across runs. Which repositories of a target registry
// hold which blobs: a blob already in one repository is mounted into the next instead of
// uploaded again, and a blob several copies need at once is transferred once (the others
// wait for it and mount it). And which manifests an index lists, so that referrers of an
// index's platforms are found without reading it again. One Cache serves any number of
// Engines and runs; it is safe for concurrent use.
//
// What it remembers about blobs is a hint, never the truth: a mount of a blob that has
// since gone away is answered by the registry with an ordinary upload; a repository known
// to hold a blob is believed for blobHintTTL only; and a push the registry refuses for a
// missing blob makes the Engine forget what it believed about that repository and try
// again with real checks. A blob another copy is moving is waited for only while that
// copy makes progress. What it remembers about indexes is content-addressed, so always
// true.
type Cache struct {
	mu      sync.Mutex
	blobs   map[blobKey]*blobEntry
	indexes map[v1.Hash][]v1.Hash
	limit   int
	// pool shares transports and registry sessions between the Engines (session.go).
	pool registryhttp.Pool
	// Rates are the pull limits source registries publish, shared by the Engines (a
	// registry's limit is the client's); set Rates.Observe before the first copy.
	Rates registryhttp.RateLimits
	// remembered are hints from earlier processes (Remember): repositories to mount a blob
	// from, never a reason to skip it, since only the registry can say it still holds it.
	remembered map[blobKey][]repoHint
	// recall loads remembered on the first blob that needs a repository to mount from.
	recall func(remember func(registry string, d v1.Hash, repo string, at time.Time))
}

type blobKey struct {
	registry string
	digest   v1.Hash
}

type blobEntry struct {
	// repos hold the blob, the most recent last.
	repos []repoHint
	// busy is closed when the transfer under way ends.
	busy chan struct{}
	// moved is when the transfer under way last made progress.
	moved time.Time
}

type repoHint struct {
	repo string
	at   time.Time
	// tenant wrote the blob there (Options.Tenant); only its own copies mount from it.
	tenant string
}

// blobHintTTL is how long a repository is believed to hold a blob without checking.
const blobHintTTL = time.Hour

// blobPatience is how long a copy waits for another's transfer of a blob that makes no
// progress before it moves the blob itself: a stalled transfer must not stall every copy
// that shares the layer.
const blobPatience = 10 * time.Second

// maxReposPerBlob bounds what an entry remembers: one repository is enough to mount from.
const maxReposPerBlob = 8

// DefaultCacheSize is how many blobs (and, separately, indexes) a Cache made by NewCache
// remembers.
const DefaultCacheSize = 200_000

// NewCache returns an empty Cache remembering up to limit blobs and limit indexes
// (DefaultCacheSize when limit < 1); past it, arbitrary idle entries are forgotten.
func NewCache(limit int) *Cache {
	if limit < 1 {
		limit = DefaultCacheSize
	}
	return &Cache{blobs: map[blobKey]*blobEntry{}, indexes: map[v1.Hash][]v1.Hash{}, limit: limit}
}

// children returns the manifests index lists, if known.
func (b *Cache) children(index v1.Hash) ([]v1.Hash, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.indexes[index]
	return c, ok
}

// setChildren records the manifests index lists.
func (b *Cache) setChildren(index v1.Hash, children []v1.Hash) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.indexes {
		if len(b.indexes) < b.limit {
			break
		}
		delete(b.indexes, k)
	}
	b.indexes[index] = children
}

// claim decides what the caller does about blob d in repo of registry: nothing (the repo
// has it), wait for busy and ask again, or transfer it (mounting from `from` when set) and
// then call release.
//
// A repository to mount from is one a copy of the same tenant wrote: a mount needs only a
// blob's digest, and a tenant must not reach another's blobs by knowing one.
func (b *Cache) claim(registry, repo, tenant string, d v1.Hash, now time.Time) (has bool, busy <-chan struct{}, from string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := blobKey{registry, d}
	e := b.blobs[k]
	if e == nil {
		b.evict()
		e = &blobEntry{}
		b.blobs[k] = e
	}
	e.repos = slices.DeleteFunc(e.repos, func(h repoHint) bool { return now.Sub(h.at) >= blobHintTTL })
	for _, h := range e.repos {
		if h.repo == repo {
			return true, nil, ""
		}
	}
	if e.busy != nil {
		return false, e.busy, ""
	}
	e.busy, e.moved = make(chan struct{}), now
	for _, h := range slices.Backward(e.repos) {
		if h.tenant == tenant {
			from = h.repo
			break
		}
	}
	if from == "" && tenant == "" { // hints of earlier processes are regwire sync's, tenant ""
		if b.recall != nil {
			recall := b.recall
			b.recall = nil
			recall(b.remember)
		}
		for _, h := range slices.Backward(b.remembered[k]) {
			if h.repo != repo {
				from = h.repo // the registry checks the mount; a stale one is an upload
				break
			}
		}
	}
	return false, nil, from
}

// Remember adds what an earlier process learned: repo of registry held blob d at at. It
// only ever names a repository to mount from (the registry checks the mount; one that no
// longer holds the blob answers with an ordinary upload): a copy never skips a blob on its
// word.
func (b *Cache) Remember(registry string, d v1.Hash, repo string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.remember(registry, d, repo, at)
}

// Recall sets where what earlier processes learned comes from: load is called once, when
// the first blob needs a repository to mount from, and hands each hint to remember (as
// Remember would). A run that transfers no blob (a no-op) never calls it.
func (b *Cache) Recall(load func(remember func(registry string, d v1.Hash, repo string, at time.Time))) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recall = load
}

func (b *Cache) remember(registry string, d v1.Hash, repo string, at time.Time) {
	if b.remembered == nil {
		b.remembered = map[blobKey][]repoHint{}
	}
	k := blobKey{registry, d}
	hs := append(slices.Clone(b.remembered[k]), repoHint{repo: repo, at: at})
	slices.SortFunc(hs, func(a, b repoHint) int { return a.at.Compare(b.at) })
	if len(hs) > maxReposPerBlob {
		hs = hs[len(hs)-maxReposPerBlob:]
	}
	b.remembered[k] = hs
}

// Learned calls f for every repository this Cache saw hold a blob, with when: what a
// later process may mount from.
func (b *Cache) Learned(f func(registry string, d v1.Hash, repo string, at time.Time)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, e := range b.blobs {
		for _, h := range e.repos {
			f(k.registry, k.digest, h.repo, h.at)
		}
	}
}

// moved records progress of the transfer of d under way.
func (b *Cache) moved(registry string, d v1.Hash, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.blobs[blobKey{registry, d}]; e != nil && e.busy != nil {
		e.moved = now
	}
}

// stalled says whether the transfer of d under way has made no progress for blobPatience.
func (b *Cache) stalled(registry string, d v1.Hash, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.blobs[blobKey{registry, d}]
	return e != nil && e.busy != nil && now.Sub(e.moved) >= blobPatience
}

// release ends the caller's transfer of d into repo; ok records that repo now holds it.
// owner says whether the caller held the transfer (claim gave it), rather than took it
// over from a stalled one.
func (b *Cache) release(registry, repo, tenant string, d v1.Hash, ok, owner bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.blobs[blobKey{registry, d}]
	if e == nil {
		return
	}
	if ok {
		e.repos = append(e.repos, repoHint{repo: repo, at: time.Now(), tenant: tenant})
		if len(e.repos) > maxReposPerBlob {
			e.repos = e.repos[1:]
		}
	}
	if owner && e.busy != nil {
		close(e.busy)
		e.busy = nil
	}
}

// forgetRepo drops every hint that repo of registry holds a blob: the registry said it
// lacks one.
func (b *Cache) forgetRepo(registry, repo string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, e := range b.blobs {
		if k.registry == registry {
			e.repos = slices.DeleteFunc(e.repos, func(h repoHint) bool { return h.repo == repo })
		}
	}
}

// evict forgets idle entries while the index is full. Called with mu held.
func (b *Cache) evict() {
	for k, e := range b.blobs {
		if len(b.blobs) < b.limit {
			return
		}
		if e.busy == nil {
			delete(b.blobs, k)
		}
	}
}

// acquire waits until the caller may transfer d into repo. It returns has=true when repo
// holds d already (nothing to do), else the repository to mount from ("" for none) and
// whether the caller owns the transfer; the caller must then call release. A transfer
// under way that makes no progress for blobPatience is not waited for any longer: the
// caller moves the blob itself (owner false).
func (b *Cache) acquire(ctx context.Context, registry, repo, tenant string, d v1.Hash) (has bool, from string, owner bool, err error) {
	var patience <-chan time.Time // made only when there is something to wait for
	for {
		has, busy, from := b.claim(registry, repo, tenant, d, time.Now())
		if busy == nil {
			return has, from, !has, nil
		}
		if patience == nil {
			tick := time.NewTicker(blobPatience / 4)
			defer tick.Stop()
			patience = tick.C
		}
		select {
		case <-busy:
		case <-patience:
			if b.stalled(registry, d, time.Now()) {
				return false, "", false, nil
			}
		case <-ctx.Done():
			return false, "", false, ctx.Err()
		}
	}
}
