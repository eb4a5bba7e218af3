package imagecopy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// digests an index lists.
func (e *Engine) pushTree(ctx context.Context, m *manifest, ref name.Reference, p *tagProgress) ([]v1.Hash, error) {
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
		for _, d := range im.Manifests {
			children = append(children, d.Digest)
			g.Go(func() error { return e.copyChild(gctx, d, p) })
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

// maxIndexDepth bounds indexes within indexes: an index of images is depth 1; attestation
// and artifact indexes add a level or two.
const maxIndexDepth = 8

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

// A blob's transfer must end within blobDeadlineBase plus its size at minTransferRate: a
// registry that trickles bytes slowly enough never stalls, but cannot hold a copy forever.
// (Variables so that tests can shorten them.)
var (
	blobDeadlineBase       = 5 * time.Minute
	minTransferRate  int64 = 64 << 10 // bytes per second
)

// blobDeadline is how long a transfer of size bytes may take.
func blobDeadline(size int64) time.Duration {
	return blobDeadlineBase + time.Duration(max(size, 0)/minTransferRate)*time.Second
}

// copyBlob makes the target repository hold blob d: nothing when this Engine (or another
// sharing its Cache) knows it does; else, in one job slot, go-containerregistry's
// existence check, a cross-repository mount from a repository of the target registry
// known to hold it, or a streamed upload from the source. A blob several tags need at
// once is transferred once: the others wait for it.
func (e *Engine) copyBlob(ctx context.Context, d v1.Descriptor, p *tagProgress) error {
	registry, repo := e.dst.repo.RegistryStr(), e.dst.repo.RepositoryStr()
	has, from, owner, err := e.cache.acquire(ctx, registry, repo, d.Digest)
	if err != nil {
		return err
	}
	if has {
		p.found.Add(d.Size)
		p.report()
		return nil
	}
	ok := false
	defer func() { e.cache.release(registry, repo, d.Digest, ok, owner) }()
	if from == "" && e.src.repo.RegistryStr() == registry && e.src.repo.RepositoryStr() != repo {
		from = e.src.repo.RepositoryStr() // same registry: mount from the source repository
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
	limit := blobDeadline(d.Size)
	ctx, cancel := context.WithTimeoutCause(ctx, limit, &registryhttp.BoundError{Bound: "minTransferRate",
		What: fmt.Sprintf("blob %s (%d bytes) still moving after %s, slower than %d KiB/s", d.Digest, d.Size, limit, minTransferRate>>10)})
	defer cancel()
	sb.ctx = ctx // the source's side of the transfer has the same deadline
	var sent atomic.Int64
	uctx := registryhttp.CountUploads(ctx, func(n int64) {
		sent.Add(n)
		p.add(n)
		e.cache.moved(registry, d.Digest, time.Now())
	})
	err = e.pusher.Upload(uctx, e.dst.repo, l)
	release()
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		// The transfer's deadline, not whatever the cancelled request said; it concerns the
		// transfer as a whole, either side may be the slow one.
		return &SideError{Side: "transfer", Ref: e.src.repo.Digest(d.Digest.String()).String() + " to " + e.dst.repo.String(), Err: cause}
	}
	if err != nil {
		return describe(err, "target", e.dst.repo.Digest(d.Digest.String()).String())
	}
	if sent.Load() == 0 { // found or mounted: nothing went over the wire
		p.found.Add(d.Size)
		p.report()
	}
	ok = true
	return nil
}

// sourceBlob is a blob of the source, streamed when go-containerregistry uploads it.
type sourceBlob struct {
	e   *Engine
	ctx context.Context
	d   v1.Descriptor
}

func (b *sourceBlob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b *sourceBlob) Size() (int64, error)                { return b.d.Size, nil }
func (b *sourceBlob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }

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
	return &sourceReader{ReadCloser: rc, ref: ref.String()}, nil
}

// sourceReader names the source in a read error: the upload it feeds would otherwise
// report the source's failure as the target's.
type sourceReader struct {
	io.ReadCloser
	ref string
}

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = describe(err, "source", r.ref)
	}
	return n, err
}
