package imagesync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	var mu sync.Mutex // guards the runs' results
	fail := func(r *tagRun, what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if r.res.Err == nil {
			r.res.Err = fmt.Errorf("referrer %s: %w", what, err)
		}
	}
	listing, err := e.list(ctx)
	if err != nil {
		for _, r := range runs {
			if r.res.Err == nil {
				fail(r, "tags", err)
			}
		}
		return
	}
	tagsOf := map[v1.Hash][]string{}
	for _, t := range listing {
		if h, ok := referrerSubject(t); ok {
			tagsOf[h] = append(tagsOf[h], t)
		}
	}

	owner := map[v1.Hash]*tagRun{} // a manifest and the tag its referrers count for
	type unread struct {
		index v1.Hash
		owner *tagRun
	}
	var wave []v1.Hash
	var unreads []unread
	adopt := func(r, o *tagRun) {
		for _, s := range r.subjects {
			if _, ok := owner[s]; !ok {
				owner[s] = o
				wave = append(wave, s)
			}
		}
		if r.unread != nil {
			unreads = append(unreads, unread{*r.unread, o})
		}
	}
	for _, r := range runs {
		if r.res.Err == nil {
			adopt(r, r)
		}
	}
	api := false
	if len(wave) > 0 {
		if api, err = e.referrersAPI(ctx, wave[0]); err != nil {
			for _, r := range runs {
				if r.res.Err == nil {
					fail(r, "API", err)
				}
			}
			return
		}
	}
	explained := func() bool {
		for h := range tagsOf {
			if _, ok := owner[h]; !ok {
				return false
			}
		}
		return true
	}

	for len(wave) > 0 || (len(unreads) > 0 && !explained()) {
		if len(wave) == 0 {
			// Referrer tags no known manifest explains: read the indexes skipped so far.
			for _, u := range unreads {
				d, err := e.getManifest(ctx, e.src.repo.Digest(u.index.String()))
				if err != nil {
					fail(u.owner, u.index.String(), describe(err, "source", e.src.repo.Digest(u.index.String()).String()))
					continue
				}
				m := &manifest{raw: d.Manifest, mediaType: d.MediaType, digest: d.Digest}
				e.cache.setChildren(u.index, m.children())
				adopt(&tagRun{subjects: m.children()}, u.owner)
			}
			unreads = nil
			continue
		}
		current := wave
		wave = nil
		var found []*tagRun // what this wave copied or checked, with the run it counts for
		var foundOwners []*tagRun
		var wg sync.WaitGroup
		for _, s := range current {
			o := owner[s]
			for _, tag := range tagsOf[s] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tr := e.copyTag(ctx, tag, false)
					mu.Lock()
					o.res.Referrers++
					o.res.Bytes += tr.res.Bytes
					found, foundOwners = append(found, tr), append(foundOwners, o)
					mu.Unlock()
					if tr.res.Err != nil {
						fail(o, tag, tr.res.Err)
					}
				}()
			}
			if api {
				wg.Add(1)
				go func() {
					defer wg.Done()
					trs, err := e.copyAPIReferrers(ctx, s)
					mu.Lock()
					for _, tr := range trs {
						o.res.Referrers++
						o.res.Bytes += tr.res.Bytes
						found, foundOwners = append(found, tr), append(foundOwners, o)
					}
					mu.Unlock()
					if err != nil {
						fail(o, s.String(), err)
					}
				}()
			}
		}
		wg.Wait()
		for i, tr := range found {
			if tr.res.Err == nil {
				adopt(tr, foundOwners[i])
			}
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
	idx, err := remote.Referrers(ref, append(e.src.opts, remote.WithContext(ctx))...)
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
		pctx := context.WithValue(ctx, sentKey{}, &byteCounter{add: p.add})
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
	if v := e.src.referrersAPI.Load(); v != 0 {
		return v == referrersServed, nil
	}
	ref := e.src.repo.Digest(d.String())
	release, err := e.slot(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	if _, err := remote.Referrers(ref, append(e.src.opts, remote.WithContext(ctx))...); err != nil {
		return false, describe(fmt.Errorf("listing referrers: %w", err), "source", ref.String())
	}
	return e.src.referrersAPI.Load() == referrersServed, nil
}
