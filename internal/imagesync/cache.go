package imagesync

import (
	"context"
	"net/http"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Cache is what Engines remember across runs. Which repositories of a target registry
// hold which blobs: a blob already in one repository is mounted into the next instead of
// uploaded again, and a blob several copies need at once is transferred once (the others
// wait for it and mount it). And which manifests an index lists, so that referrers of an
// index's platforms are found without reading it again. One Cache serves any number of
// Engines and runs; it is safe for concurrent use.
//
// What it remembers about blobs is a hint: a mount of a blob that has since gone away is
// answered by the registry with an ordinary upload. What it remembers about indexes is
// content-addressed, so always true.
type Cache struct {
	mu      sync.Mutex
	blobs   map[blobKey]*blobEntry
	indexes map[v1.Hash][]v1.Hash
	limit   int
	// sessions are the registries' authentication challenges (session.go).
	sessions map[sessionKey]*session
	// transports are shared per TLS setting (session.go).
	transports map[transportKey]*http.Transport
}

type blobKey struct {
	registry string
	digest   v1.Hash
}

type blobEntry struct {
	// repos hold the blob, the most recent last.
	repos []string
	// busy is closed when the transfer under way ends.
	busy chan struct{}
}

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
func (b *Cache) claim(registry, repo string, d v1.Hash) (has bool, busy <-chan struct{}, from string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := blobKey{registry, d}
	e := b.blobs[k]
	if e == nil {
		b.evict()
		e = &blobEntry{}
		b.blobs[k] = e
	}
	for _, r := range e.repos {
		if r == repo {
			return true, nil, ""
		}
	}
	if e.busy != nil {
		return false, e.busy, ""
	}
	e.busy = make(chan struct{})
	if n := len(e.repos); n > 0 {
		from = e.repos[n-1]
	}
	return false, nil, from
}

// release ends the caller's transfer of d into repo; ok records that repo now holds it.
func (b *Cache) release(registry, repo string, d v1.Hash, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.blobs[blobKey{registry, d}]
	if e == nil {
		return
	}
	if ok {
		e.repos = append(e.repos, repo)
		if len(e.repos) > maxReposPerBlob {
			e.repos = e.repos[1:]
		}
	}
	if e.busy != nil {
		close(e.busy)
		e.busy = nil
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
// holds d already (nothing to do), else the repository to mount from ("" for none); the
// caller must then call release.
func (b *Cache) acquire(ctx context.Context, registry, repo string, d v1.Hash) (has bool, from string, err error) {
	for {
		has, busy, from := b.claim(registry, repo, d)
		if busy == nil {
			return has, from, nil
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return false, "", ctx.Err()
		}
	}
}
