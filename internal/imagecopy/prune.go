package imagecopy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Owned is a tag of the target that a copy wrote, with the digest it wrote there.
type Owned struct {
	Tag    string
	Digest string
}

// Why a tag to prune stays in the target.
const (
	// KeptRewritten: the tag points at another digest than the one written: someone else
	// wrote it since, so it is theirs.
	KeptRewritten = "rewritten"
	// KeptShared: another tag of the repository (one kept, or one someone else wrote)
	// points at the same digest; a registry deletes manifests by digest, which would take
	// that tag too.
	KeptShared = "shared"
	// KeptProtected: another copy's record holds the digest.
	KeptProtected = "protected"
	// KeptGone: the tag is no longer in the target (removed by someone, or by an earlier
	// prune that ended before it could say so).
	KeptGone = "gone"
)

// Pruned is what happened to one tag to prune.
type Pruned struct {
	Tag, Digest string
	// Removed: its manifest was deleted (with DryRun: would be).
	Removed bool
	// Kept says why it stays (Kept* constants); empty when removed or failed.
	Kept string
	Err  error
}

// ErrDeleteRefused says that the target registry does not delete manifests.
var ErrDeleteRefused = errors.New("the registry refuses to delete manifests")

// Prune removes from the target the tags of candidates (tags this copy wrote and no longer
// selects) by deleting their manifests by digest, as the distribution API deletes them —
// but only a candidate whose tag still points at the digest written, whose digest no tag
// outside the candidates points at (another kept tag, someone else's tag), and that
// protected (the digests other copies' records hold) does not claim. It lists the
// target's tags and checks each once. With dryRun nothing is deleted: Removed says what
// would be.
func (e *Engine) Prune(ctx context.Context, candidates []Owned, protected func(digest string) bool, dryRun bool) ([]Pruned, error) {
	out := make([]Pruned, len(candidates))
	for i, c := range candidates {
		out[i] = Pruned{Tag: c.Tag, Digest: c.Digest}
	}
	if len(candidates) == 0 {
		return out, nil
	}
	e.startTarget(ctx)
	if e.startErr != nil {
		return nil, e.startErr
	}
	tags, err := e.dst.puller.List(ctx, e.dst.repo)
	if err != nil && !isNotFound(err) {
		return nil, describe(fmt.Errorf("listing tags: %w", err), "target", e.dst.repo.String())
	}
	// What every tag of the target points at, asked on Jobs workers.
	digests := make(map[string]string, len(tags))
	var mu sync.Mutex
	var firstErr error
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(e.o.Jobs, len(tags)) {
		wg.Go(func() {
			for tag := range next {
				release, err := e.slot(ctx)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					continue
				}
				d, err := e.dst.puller.Head(ctx, e.dst.repo.Tag(tag))
				release()
				mu.Lock()
				switch {
				case err == nil:
					digests[tag] = d.Digest.String()
				case !isNotFound(err): // a tag deleted meanwhile is no tag
					firstErr = cmpErr(firstErr, describe(err, "target", e.dst.repo.Tag(tag).String()))
				}
				mu.Unlock()
			}
		})
	}
	for _, tag := range tags {
		next <- tag
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		// Without every tag's digest, sharing cannot be ruled out: delete nothing.
		return nil, firstErr
	}
	removable := map[string]bool{}
	for i := range out {
		p := &out[i]
		d, ok := digests[p.Tag]
		switch {
		case !ok:
			p.Kept = KeptGone
		case d != p.Digest:
			p.Kept = KeptRewritten
		case protected != nil && protected(d):
			p.Kept = KeptProtected
		default:
			removable[p.Tag] = true
		}
	}
	// A digest goes only when every tag pointing at it goes.
	for tag, d := range digests {
		if removable[tag] {
			continue
		}
		for i := range out {
			if removable[out[i].Tag] && out[i].Digest == d {
				removable[out[i].Tag] = false
				out[i].Kept = KeptShared
			}
		}
	}
	deleted := map[string]error{}
	for i := range out {
		p := &out[i]
		if !removable[p.Tag] {
			continue
		}
		if dryRun {
			p.Removed = true
			continue
		}
		err, done := deleted[p.Digest]
		if !done {
			err = e.deleteManifest(ctx, p.Digest)
			deleted[p.Digest] = err
		}
		p.Removed, p.Err = err == nil, err
	}
	return out, nil
}

// deleteManifest deletes a manifest of the target by digest; a manifest already gone is
// deleted.
func (e *Engine) deleteManifest(ctx context.Context, digest string) error {
	d, err := v1.NewHash(digest)
	if err != nil {
		return err
	}
	release, err := e.slot(ctx)
	if err != nil {
		return err
	}
	defer release()
	ref := e.dst.repo.Digest(d.String())
	err = remote.Delete(ref, slices.Concat(e.dst.opts, []remote.Option{remote.WithContext(ctx)})...)
	var terr *transport.Error
	switch {
	case err == nil, isNotFound(err):
		return nil
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusMethodNotAllowed || hasCode(terr, transport.UnsupportedErrorCode)):
		return &SideError{Side: "target", Ref: ref.String(), StatusCode: terr.StatusCode,
			Err: fmt.Errorf("%w: enable deletes (distribution: storage.delete.enabled) or turn prune off", ErrDeleteRefused)}
	case errors.As(err, &terr) && terr.StatusCode == http.StatusForbidden:
		return &SideError{Side: "target", Ref: ref.String(), StatusCode: terr.StatusCode,
			Err: fmt.Errorf("%w to these credentials: give them delete (Nexus: nx-repository-view-docker-<repository>-delete) or turn prune off", ErrDeleteRefused)}
	}
	return compact(describe(err, "target", ref.String()))
}

// hasCode says whether a registry's error answer carries code.
func hasCode(terr *transport.Error, code transport.ErrorCode) bool {
	return slices.ContainsFunc(terr.Errors, func(d transport.Diagnostic) bool { return d.Code == code })
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
