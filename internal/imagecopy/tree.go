package imagecopy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/regwire/regwire/internal/registryhttp"
)

// manifest is a manifest's bytes as they go to the target.
type manifest struct {
	raw       []byte
	mediaType types.MediaType
	digest    v1.Hash
}

// RawManifest and MediaType make a manifest a remote.Taggable that is put as it is.
func (m *manifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m *manifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// newManifest serializes a (filtered) index.
func newManifest(im *v1.IndexManifest, mt types.MediaType) (*manifest, error) {
	raw, err := json.Marshal(im)
	if err != nil {
		return nil, err
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	return &manifest{raw: raw, mediaType: mt, digest: d}, nil
}

// children returns the digests an index lists (none for an image).
func (m *manifest) children() []v1.Hash {
	if !m.mediaType.IsIndex() {
		return nil
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(m.raw))
	if err != nil {
		return nil
	}
	out := make([]v1.Hash, 0, len(im.Manifests))
	for _, d := range im.Manifests {
		out = append(out, d.Digest)
	}
	return out
}

// pushTree copies what m references and then m itself to ref on the target: an index's
// manifests the target lacks (each with its blobs), an image's blobs. It returns the
// distinct digests an index lists.
func (e *Engine) pushTree(ctx context.Context, m *manifest, ref name.Reference, p *tagProgress) ([]v1.Hash, error) {
	w, ctx := walkOf(ctx)
	if err := w.hold(m); err != nil {
		return nil, describe(err, "source", ref.String())
	}
	p.total.Add(int64(len(m.raw)))
	var children []v1.Hash
	g, gctx := errgroup.WithContext(ctx)
	// Children and blobs start as workers free up: a 4 MiB index lists tens of thousands.
	g.SetLimit(2 * max(e.o.Jobs, 1))
	if m.mediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(m.raw))
		if err != nil {
			return nil, describe(fmt.Errorf("reading index: %w", err), "source", ref.String())
		}
		listed := make(map[v1.Hash]bool, len(im.Manifests))
		for _, d := range im.Manifests {
			if listed[d.Digest] { // an index may list a manifest many times: it is copied once
				continue
			}
			listed[d.Digest] = true
			children = append(children, d.Digest)
			g.Go(func() error { return w.once(gctx, d.Digest, func() error { return e.copyChild(gctx, d, p) }) })
		}
	} else {
		blobs, err := blobsOf(m)
		if err != nil {
			return nil, describe(err, "source", ref.String())
		}
		for _, d := range blobs {
			p.total.Add(d.Size)
			g.Go(func() error { return e.copyBlob(gctx, d, p) })
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	release, err := e.slot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := e.pusher.Put(ctx, ref, m); err != nil {
		return nil, describe(err, "target", ref.String())
	}
	return children, nil
}

// copyChild copies a manifest an index lists unless the target has it (a registry keeps a
// manifest only with all its blobs, so their checks are saved too).
func (e *Engine) copyChild(ctx context.Context, d v1.Descriptor, p *tagProgress) error {
	dst := e.dst.repo.Digest(d.Digest.String())
	depth, _ := ctx.Value(depthKey{}).(int)
	if depth++; depth > maxIndexDepth {
		return describe(&registryhttp.BoundError{Bound: "maxIndexDepth", What: fmt.Sprintf("indexes nested more than %d deep at %s", maxIndexDepth, d.Digest)}, "source", e.src.repo.Digest(d.Digest.String()).String())
	}
	ctx = context.WithValue(ctx, depthKey{}, depth)
	release, err := e.slot(ctx)
	if err != nil {
		return err
	}
	_, err = e.dst.puller.Head(ctx, dst)
	release()
	if err == nil {
		p.found.Add(d.Size)
		p.total.Add(d.Size)
		p.report()
		return nil
	} else if !isNotFound(err) {
		return describe(err, "target", dst.String())
	}
	src := e.src.repo.Digest(d.Digest.String())
	desc, err := e.getManifest(ctx, src)
	if err != nil {
		return describe(err, "source", src.String())
	}
	_, err = e.pushTree(ctx, &manifest{raw: desc.Manifest, mediaType: desc.MediaType, digest: desc.Digest}, dst, p)
	return err
}

// depthKey carries how deep in nested indexes a copy is.
type depthKey struct{}

// Bounds on one manifest tree (a tag, or a referrer, with all it lists). An index of images
// is depth 1; attestation and artifact indexes add a level or two; a multi-platform image
// with attestations holds a few dozen manifests of a few KiB.
const (
	maxIndexDepth = 8
	// maxTreeManifests bounds the distinct manifests of one tree.
	maxTreeManifests = 10_000
	// maxTreeBytes bounds the manifests of one tree held at once, all together: four
	// manifests of the OCI spec's largest size.
	maxTreeBytes = 16 << 20
)

// walkKey carries the *walk of the manifest tree being copied.
type walkKey struct{}

// walk is one manifest tree's copy. Each digest in it is visited once however many times
// and however deep its indexes list it (an index listing one child thousands of times,
// nested, costs one check of that child, not thousands to the power of the depth); its
// manifests are bounded in number and in bytes.
type walk struct {
	mu     sync.Mutex
	visits map[v1.Hash]*visit
	held   int64
}

// visit is the copy of one digest of a walk; others that meet the digest wait for it.
type visit struct {
	done chan struct{}
	err  error
}

// walkOf returns the walk ctx belongs to, starting one (and a context carrying it) when
// ctx has none.
func walkOf(ctx context.Context) (*walk, context.Context) {
	if w, ok := ctx.Value(walkKey{}).(*walk); ok {
		return w, ctx
	}
	w := &walk{visits: map[v1.Hash]*visit{}}
	return w, context.WithValue(ctx, walkKey{}, w)
}

// once runs copy for digest d the first time the walk meets d; later meetings wait for
// that copy and share its outcome.
func (w *walk) once(ctx context.Context, d v1.Hash, copy func() error) error {
	w.mu.Lock()
	if v, ok := w.visits[d]; ok {
		w.mu.Unlock()
		select {
		case <-v.done:
			return v.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(w.visits) >= maxTreeManifests {
		w.mu.Unlock()
		return &registryhttp.BoundError{Bound: "maxTreeManifests", What: fmt.Sprintf("the image lists more than %d distinct manifests", maxTreeManifests)}
	}
	v := &visit{done: make(chan struct{})}
	w.visits[d] = v
	w.mu.Unlock()
	v.err = copy()
	close(v.done)
	return v.err
}

// hold counts a manifest of the tree against maxTreeBytes.
func (w *walk) hold(m *manifest) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held += int64(len(m.raw)); w.held > maxTreeBytes {
		return &registryhttp.BoundError{Bound: "maxTreeBytes", What: fmt.Sprintf("the image's manifests add up to more than %d MiB", maxTreeBytes>>20)}
	}
	return nil
}

// blobsOf returns the blobs an image manifest references that belong in a registry: its
// config and its distributable layers.
func blobsOf(m *manifest) ([]v1.Descriptor, error) {
	mf, err := v1.ParseManifest(bytes.NewReader(m.raw))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if mf.Config.Digest.Algorithm == "" {
		what := "it has no config"
		if mf.MediaType.IsIndex() || bytes.Contains(m.raw, []byte(`"manifests"`)) {
			what = "it is an index"
		}
		return nil, fmt.Errorf("manifest %s is served as %s, but %s: the registry labels it wrongly", m.digest, m.mediaType, what)
	}
	out := []v1.Descriptor{mf.Config}
	for _, l := range mf.Layers {
		if l.MediaType.IsDistributable() {
			out = append(out, l)
		}
	}
	return out, nil
}

// DefaultMaxBlobBytes is the largest blob copied unless Options.MaxBlobBytes says
// otherwise: larger than the layers of the largest images in common use (CUDA and model
// images carry layers of several GiB), small enough that a source declaring a terabyte is
// refused before a byte moves.
const DefaultMaxBlobBytes int64 = 32 << 30

// DefaultMinTransferRate is the slowest a blob may move, in bytes per second averaged over
// windows of twice the stall timeout, unless Options.MinTransferRate says otherwise.
const DefaultMinTransferRate int64 = 64 << 10

// copyBlob makes the target repository hold blob d: nothing when this Engine (or another
// sharing its Cache) knows it does; else, in one job slot, go-containerregistry's
// existence check, a cross-repository mount from a repository of the target registry
// known to hold it, or a streamed upload from the source. A blob several tags need at
// once is transferred once: the others wait for it.
func (e *Engine) copyBlob(ctx context.Context, d v1.Descriptor, p *tagProgress) error {
	if d.Size > e.o.MaxBlobBytes {
		return describe(&registryhttp.BoundError{Bound: "maxBlobBytes", What: fmt.Sprintf("blob %s declares %d bytes, more than the %d GiB allowed (--max-blob-size)",
			d.Digest, d.Size, e.o.MaxBlobBytes>>30)}, "source", e.src.repo.Digest(d.Digest.String()).String())
	}
	registry, repo := e.dst.repo.RegistryStr(), e.dst.repo.RepositoryStr()
	has, from, owner, err := e.cache.acquire(ctx, registry, repo, e.o.Tenant, d.Digest)
	if err != nil {
		return err
	}
	if has {
		p.found.Add(d.Size)
		p.report()
		return nil
	}
	ok := false
	defer func() { e.cache.release(registry, repo, e.o.Tenant, d.Digest, ok, owner) }()
	if from == "" && e.o.Tenant == "" && e.src.repo.RegistryStr() == registry && e.src.repo.RepositoryStr() != repo {
		// Same registry: mount from the source repository. Not for a tenant: the mount
		// goes with the target's credentials, which may read what the tenant's may not.
		from = e.src.repo.RepositoryStr()
	}
	var l v1.Layer
	sb := &sourceBlob{e: e, ctx: ctx, d: d}
	l, err = partial.CompressedToLayer(sb)
	if err != nil {
		return err
	}
	if from != "" {
		l = &remote.MountableLayer{Layer: l, Reference: e.dst.repo.Registry.Repo(from).Digest(d.Digest.String())}
	}
	release, err := e.slot(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sb.ctx = ctx // the source's side of the transfer is watched too
	rate := e.watchRate(ctx, cancel, d, sb)
	uctx := registryhttp.CountUploads(ctx, func(n int64) {
		rate.moved.Add(n)
		p.add(n)
		e.cache.moved(registry, d.Digest, time.Now())
	})
	err = e.pusher.Upload(uctx, e.dst.repo, l)
	rate.stop()
	release()
	var se *SideError
	if cause := context.Cause(ctx); err != nil && errors.As(cause, &se) {
		return se // too slow: the side the rate watch found waiting, not whatever the cancelled request said
	}
	if err != nil {
		return describe(err, "target", e.dst.repo.Digest(d.Digest.String()).String())
	}
	if rate.moved.Load() == 0 { // found or mounted: nothing went over the wire
		p.found.Add(d.Size)
		p.report()
	}
	ok = true
	return nil
}

// rateWatch ends a blob's transfer that moves fewer than Options.MinTransferRate bytes a
// second over a stall timeout: a registry that trickles bytes never stalls, but cannot
// hold a copy slot for long either, whatever size it declares.
type rateWatch struct {
	moved atomic.Int64 // bytes uploaded
	stop  func()
}

// watchRate starts the rate watch of a blob's transfer; it cancels ctx with a *SideError
// naming the side the transfer waited on (most of the window spent reading the source: the
// source; else the target).
func (e *Engine) watchRate(ctx context.Context, cancel context.CancelCauseFunc, d v1.Descriptor, sb *sourceBlob) *rateWatch {
	w := &rateWatch{}
	stall := e.o.StallTimeout
	if stall <= 0 {
		stall = registryhttp.DefaultStallTimeout
	}
	// Twice the stall timeout: a transfer that stops altogether is always the stall it is,
	// named as such, before it is a slow one.
	window := 2 * stall
	floor := e.o.MinTransferRate * int64(window/time.Second)
	if e.o.MinTransferRate <= 0 || floor <= 0 {
		w.stop = func() {}
		return w
	}
	done := make(chan struct{})
	var once sync.Once
	w.stop = func() { once.Do(func() { close(done) }) }
	go func() {
		tick := time.NewTicker(window)
		defer tick.Stop()
		var last int64
		var lastWaited time.Duration
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			moved, waited := w.moved.Load(), sb.waited()
			// Once every byte is sent, the wait for the target's answer is the stall
			// timeout's to judge.
			if moved-last >= floor || d.Size > 0 && moved >= d.Size {
				last, lastWaited = moved, waited
				continue
			}
			side, ref := "target", e.dst.repo.Digest(d.Digest.String()).String()
			if waited-lastWaited >= window/2 {
				side, ref = "source", e.src.repo.Digest(d.Digest.String()).String()
			}
			cancel(&SideError{Side: side, Ref: ref, Err: &registryhttp.BoundError{Bound: "minTransferRate",
				What: fmt.Sprintf("blob %s moved %d bytes in %s, slower than %d KiB/s (after %d of %d bytes)", d.Digest, moved-last, window, e.o.MinTransferRate>>10, moved, d.Size)}})
			return
		}
	}()
	return w
}

// sourceBlob is a blob of the source, streamed when go-containerregistry uploads it.
type sourceBlob struct {
	e   *Engine
	ctx context.Context
	d   v1.Descriptor
	// read is the time spent in finished reads of the source, and readingSince when the
	// read under way began (0: none), both in nanoseconds.
	read, readingSince atomic.Int64
}

func (b *sourceBlob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b *sourceBlob) Size() (int64, error)                { return b.d.Size, nil }
func (b *sourceBlob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }

// waited is how long the transfer has waited on the source so far, the read under way
// included.
func (b *sourceBlob) waited() time.Duration {
	d := b.read.Load()
	if since := b.readingSince.Load(); since != 0 {
		d += max(time.Now().UnixNano()-since, 0)
	}
	return time.Duration(d)
}

func (b *sourceBlob) Compressed() (io.ReadCloser, error) {
	ref := b.e.src.repo.Digest(b.d.Digest.String())
	l, err := b.e.src.puller.Layer(b.ctx, ref)
	if err != nil {
		return nil, describe(err, "source", ref.String())
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, describe(err, "source", ref.String())
	}
	return &sourceReader{ReadCloser: rc, ref: ref.String(), blob: b, left: b.d.Size}, nil
}

// sourceReader names the source in a read error (the upload it feeds would otherwise
// report the source's failure as the target's), times the waits on the source, and refuses
// a body longer than the size the manifest declares.
type sourceReader struct {
	io.ReadCloser
	ref  string
	blob *sourceBlob
	left int64
}

func (r *sourceReader) Read(p []byte) (int, error) {
	start := time.Now().UnixNano()
	r.blob.readingSince.Store(start)
	n, err := r.ReadCloser.Read(p)
	r.blob.readingSince.Store(0)
	r.blob.read.Add(time.Now().UnixNano() - start)
	if r.left -= int64(n); r.left < 0 {
		return n, describe(fmt.Errorf("blob sends more than the %d bytes its manifest declares", r.blob.d.Size), "source", r.ref)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = describe(err, "source", r.ref)
	}
	return n, err
}
