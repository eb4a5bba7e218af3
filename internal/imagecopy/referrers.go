package imagecopy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/registryhttp"
)

// cosignSuffixes are the tags cosign attaches to sha256-<hex>.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// referrerSubject returns the digest a tag of the OCI referrers tag scheme (sha256-<hex>)
// or of cosign's (sha256-<hex>.sig, .att, .sbom) refers to.
func referrerSubject(tag string) (v1.Hash, bool) {
	hex, ok := strings.CutPrefix(tag, "sha256-")
	if !ok {
		return v1.Hash{}, false
	}
	if i := strings.IndexByte(hex, '.'); i >= 0 {
		if !slices.Contains(cosignSuffixes, hex[i:]) {
			return v1.Hash{}, false
		}
		hex = hex[:i]
	}
	h, err := v1.NewHash("sha256:" + hex)
	return h, err == nil
}

// syncReferrers copies what refers to the manifests of runs, and what refers to that, and
// so on. Referrer tags come from the source's tag listing (read once per Engine): each
// costs a HEAD on each side when up to date, like any tag. A source that serves the OCI
// referrers API is asked once per manifest as well (found out with one request per
// Engine). Indexes that were up to date (so never read) are read only when the listing has
// referrer tags that none of the known manifests explains, which may be their platforms'.
func (e *Engine) syncReferrers(ctx context.Context, runs []*tagRun) {
	w := &referrerWalk{e: e, owner: map[v1.Hash]*tagRun{}, tagsOf: map[v1.Hash][]string{}}
	listing, err := e.list(ctx)
	if err != nil {
		w.failAll(runs, "tags", err)
		return
	}
	for _, t := range listing {
		if h, ok := referrerSubject(t); ok {
			w.tagsOf[h] = append(w.tagsOf[h], t)
		}
	}
	for _, r := range runs {
		if r.res.Err == nil {
			w.adopt(r, r)
		}
	}
	if len(w.wave) > 0 {
		if w.api, err = e.referrersAPI(ctx, w.wave[0]); err != nil {
			w.failAll(runs, "API", err)
			return
		}
	}
	for len(w.wave) > 0 || (len(w.unreads) > 0 && !w.explained()) {
		if len(w.wave) == 0 {
			w.readUnread(ctx)
			continue
		}
		w.next(ctx)
	}
}

// referrerWalk is one syncReferrers: it walks the referrer graph in waves, from the copied
// manifests to their referrers, then to the referrers' referrers.
type referrerWalk struct {
	e *Engine
	// tagsOf lists the referrer tags of the source's listing by subject digest.
	tagsOf map[v1.Hash][]string
	// api says whether the source serves the OCI referrers API.
	api bool
	// owner maps each manifest whose referrers are looked for to the tag they count for.
	owner map[v1.Hash]*tagRun
	// wave holds the manifests whose referrers the next wave looks for.
	wave []v1.Hash
	// unreads are indexes that were up to date, hence never read: their platforms'
	// referrers are unknown until they are.
	unreads []unreadIndex

	mu sync.Mutex // guards the runs' results while a wave runs
}

type unreadIndex struct {
	index v1.Hash
	owner *tagRun
}

// ownedRun is a referrer copied or checked, and the tag it counts for.
type ownedRun struct {
	run, owner *tagRun
}

// adopt makes r's manifests count for o: their referrers are looked for in the next wave.
func (w *referrerWalk) adopt(r, o *tagRun) {
	for _, s := range r.subjects {
		if _, ok := w.owner[s]; !ok {
			w.owner[s] = o
			w.wave = append(w.wave, s)
		}
	}
	if r.unread != nil {
		w.unreads = append(w.unreads, unreadIndex{*r.unread, o})
	}
}

// explained says whether every referrer tag's subject is a known manifest.
func (w *referrerWalk) explained() bool {
	for h := range w.tagsOf {
		if _, ok := w.owner[h]; !ok {
			return false
		}
	}
	return true
}

// fail records the first referrer error of r.
func (w *referrerWalk) fail(r *tagRun, what string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r.res.Err == nil {
		r.res.Err = fmt.Errorf("referrer %s: %w", what, err)
	}
}

// failAll fails every run that had not failed yet.
func (w *referrerWalk) failAll(runs []*tagRun, what string, err error) {
	for _, r := range runs {
		w.fail(r, what, err)
	}
}

// readUnread reads the indexes skipped so far: there are referrer tags no known manifest
// explains, which may be their platforms'.
func (w *referrerWalk) readUnread(ctx context.Context) {
	e := w.e
	for _, u := range w.unreads {
		ref := e.src.repo.Digest(u.index.String())
		d, err := e.getManifest(ctx, ref)
		if err != nil {
			w.fail(u.owner, u.index.String(), describe(err, "source", ref.String()))
			continue
		}
		m := &manifest{raw: d.Manifest, mediaType: d.MediaType, digest: d.Digest}
		e.cache.setChildren(u.index, m.children())
		w.adopt(&tagRun{subjects: m.children()}, u.owner)
	}
	w.unreads = nil
}

// next copies the referrers of the current wave's manifests, by tag and, where the source
// serves it, through the referrers API; what they copied makes the next wave.
func (w *referrerWalk) next(ctx context.Context) {
	current := w.wave
	w.wave = nil
	var found []ownedRun
	record := func(o *tagRun, trs ...*tagRun) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, tr := range trs {
			o.res.Referrers++
			o.res.Bytes += tr.res.Bytes
			found = append(found, ownedRun{tr, o})
		}
	}
	var wg sync.WaitGroup
	for _, s := range current {
		o := w.owner[s]
		for _, tag := range w.tagsOf[s] {
			wg.Go(func() {
				tr := w.e.copyTag(ctx, tag, false)
				record(o, tr)
				if tr.res.Err != nil {
					w.fail(o, tag, tr.res.Err)
				}
			})
		}
		if w.api {
			wg.Go(func() {
				trs, err := w.e.copyAPIReferrers(ctx, s)
				record(o, trs...)
				if err != nil {
					w.fail(o, s.String(), err)
				}
			})
		}
	}
	wg.Wait()
	for _, f := range found {
		if f.run.res.Err == nil {
			w.adopt(f.run, f.owner)
		}
	}
}

// copyAPIReferrers copies the referrers the source's OCI referrers API lists for subject
// (each checked on the target by digest).
func (e *Engine) copyAPIReferrers(ctx context.Context, subject v1.Hash) ([]*tagRun, error) {
	ref := e.src.repo.Digest(subject.String())
	release, err := e.slot(ctx)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(ref, slices.Concat(e.src.opts, []remote.Option{remote.WithContext(ctx)})...)
	release()
	if err != nil {
		return nil, describe(fmt.Errorf("listing referrers: %w", err), "source", ref.String())
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []*tagRun
	for _, d := range im.Manifests {
		p := e.newProgress(ref.String())
		pctx := registryhttp.CountUploads(ctx, p.add)
		tr := &tagRun{res: Result{Tag: d.Digest.String(), SourceDigest: d.Digest.String()}, subjects: []v1.Hash{d.Digest}}
		if err := e.copyChild(pctx, d, p); err != nil {
			return out, err
		}
		tr.res.Bytes = p.sent.Load()
		out = append(out, tr)
	}
	return out, nil
}

// referrersAPI finds out, once per Engine, whether the source serves the OCI referrers
// API: a registry that does answers 200 for any digest; one that does not answers 404 (and
// go-containerregistry then reads the sha256-<hex> fallback tag instead).
func (e *Engine) referrersAPI(ctx context.Context, d v1.Hash) (bool, error) {
	if v := e.src.requests.ReferrersAPI(); v != registryhttp.ReferrersNotAsked {
		return v == registryhttp.ReferrersServed, nil
	}
	ref := e.src.repo.Digest(d.String())
	release, err := e.slot(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	if _, err := remote.Referrers(ref, slices.Concat(e.src.opts, []remote.Option{remote.WithContext(ctx)})...); err != nil {
		// A registry without the API should answer 404, on which go-containerregistry
		// falls back to the tag schema itself; some answer 405, 501 or 400, on which it
		// errors. Either way the API is not served: the tag listing has the referrers.
		if e.src.requests.ReferrersAPI() == registryhttp.ReferrersMissing {
			return false, nil
		}
		return false, describe(fmt.Errorf("listing referrers: %w", err), "source", ref.String())
	}
	return e.src.requests.ReferrersAPI() == registryhttp.ReferrersServed, nil
}
