// Package imagecopy copies selected tags of an image repository into another registry on
// go-containerregistry: manifests byte for byte (so digests, multi-platform indexes
// included, stay the same), blobs streamed from registry to registry.
//
// An up-to-date tag costs exactly one manifest HEAD on each side: the Engine keeps its
// registry sessions (pings, tokens) between runs. A blob the target needs is checked for,
// mounted from another repository of the target registry when one is known to hold it
// (Cache), and otherwise streamed from the source; one limit (Options.Jobs) bounds the
// registry operations of all tags and blobs together.
package imagecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
)

// Endpoint is one side of a copy: a repository and how to reach its registry.
type Endpoint struct {
	// Repository such as nexus.local/my-docker/busybox.
	Repository string
	// PathPrefix, when set, is the path the registry serves its API at instead of /v2, for
	// example /repository/my-docker/v2 for a Nexus repository with path-based routing (what
	// containerd calls override_path).
	PathPrefix string
	// Auth authenticates to the registry; nil means anonymous.
	Auth authn.Authenticator
	// CA is PEM CA certificates to trust instead of the system roots.
	CA []byte
	// Insecure skips TLS verification and allows plain HTTP.
	Insecure bool
	// HostAliases resolve registry host names (lower case) to IP addresses, as a
	// RegistryMirror's hostAliases do on nodes, for names DNS does not know.
	HostAliases map[string]string
	// Wrap, when set, wraps the transport regwire builds (tests count or break requests
	// with it).
	Wrap func(http.RoundTripper) http.RoundTripper
}

// Options tune an Engine.
type Options struct {
	// Bounds are what a registry may make the copy do.
	Bounds
	// Jobs bounds the registry operations under way at once across all tags and blobs of
	// the Engine: manifest checks, manifest copies and blob transfers share it; zero means
	// DefaultJobs.
	Jobs int
	// Progress, when set, is called as bytes of a tag reach the target (or are found
	// there): complete and total bytes of the blobs and manifests the tag's copy needs.
	Progress func(tag string, complete, total int64)
	// DryRun only finds out which tags are up to date; nothing is written.
	DryRun bool
	// Referrers also copies what refers to each copied manifest: OCI 1.1 referrers
	// (signatures, SBOMs, attestations; through the registry's referrers API or its tag
	// fallback) and cosign's sha256-<digest>.sig, .att and .sbom tags.
	Referrers bool
	// Platforms, when set, keeps only these platforms of multi-platform images: the target
	// gets a new index, whose digest differs from the source's. Single-platform images are
	// copied as they are.
	Platforms []v1.Platform
	// Backoff between retries of a request that failed with 408, 429, 5xx or a dropped
	// connection; zero means DefaultBackoff.
	Backoff remote.Backoff
	// Slots, when set, is the limit on registry operations instead of the Engine's own
	// Jobs: Engines that share it share one budget (regwire sync -f runs every repository
	// of a file at once under one --jobs).
	Slots *Slots
	// Tenant scopes what the Cache shares between copies: a blob is mounted only from
	// repositories copies of the same tenant wrote, never from the source repository (the
	// manager: the ImageSync's namespace). Empty for one tenant (regwire sync).
	Tenant string
	// Verify, when set, copies a selected tag only when a cosign signature of its digest
	// (the sha256-<hex>.sig tag) verifies with one of its keys; a tag that does not is a
	// *SignatureError and nothing of it reaches the target.
	Verify *Keys
	// Cache remembers, across Engines and runs, which target repositories hold which blobs
	// and which manifests an index lists; nil gives the Engine its own. Share one per
	// process.
	Cache *Cache
}

// Bounds are what a registry may make a copy do; an operator sets them once for every
// copy of a process (regwire sync's and the manager's flags of the same names).
type Bounds struct {
	// StallTimeout is how long a request may make no progress while regwire waits on a
	// registry before it fails with a *registryhttp.StallError; zero means
	// registryhttp.DefaultStallTimeout.
	StallTimeout time.Duration
	// MaxBlobBytes refuses a blob whose manifest declares more bytes, before any of it
	// moves; zero means DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// MinTransferRate ends a blob transfer that moves fewer bytes a second than this,
	// averaged over windows of twice StallTimeout (so that a transfer that stops is a
	// stall); zero means DefaultMinTransferRate, negative no minimum.
	MinTransferRate int64
	// SourceGuard, when set, refuses connections of the source side (its registry, token
	// realms, redirects) to loopback, link-local and unspecified addresses it does not
	// allow. The manager sets it: a tenant names the source. regwire sync, run by its user,
	// does not.
	SourceGuard *registryhttp.DialGuard
	// RateLimitFloor, when positive, stops reading manifests (pulls) from a source registry
	// whose answers publish a pull limit (Docker Hub's RateLimit-Remaining) with this many
	// pulls left or fewer: the tags that need a pull fail with a *registryhttp.RateLimitError
	// until its answers show more left. Copies running at once may each take one more.
	RateLimitFloor int
	// AllowPrivateRedirects follows a registry's redirects to private, loopback and
	// link-local addresses, which go-containerregistry refuses by default (a registry could
	// otherwise send regwire to internal services). On-premises registries whose storage
	// redirects to, say, MinIO on 10.0.0.0/8 need it.
	AllowPrivateRedirects bool
}

// DefaultJobs is how many registry operations an Engine has under way at once unless
// Options.Jobs says otherwise.
const DefaultJobs = 4

// DefaultBackoff retries six times over about half a minute: at a 20% failure rate a
// request still gives up less than once in 15,000.
var DefaultBackoff = remote.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 6}

// Result is what happened to one tag.
type Result struct {
	Tag string
	// SourceDigest and TargetDigest of the tag's manifest.
	SourceDigest, TargetDigest string
	// UpToDate is true when the target already had the source's digest.
	UpToDate bool
	// Bytes uploaded to the target.
	Bytes int64
	// Referrers counts the referrer tags and manifests checked for the tag (with
	// Options.Referrers): signatures, SBOMs, attestations, and the OCI fallback index.
	Referrers int
	// Err says why the tag failed.
	Err error
}

// side is an Endpoint ready to use: its remote options are made on first use (connect).
type side struct {
	repo     name.Repository
	endpoint Endpoint
	// base is the transport under authentication: the endpoint's TLS settings, path
	// prefix and test wrapper, request counting and Retry-After.
	base    http.RoundTripper
	backoff remote.Backoff
	// shareable says the registry session may be shared with other Engines through the
	// Cache (not when a test wraps this side's transport).
	shareable bool
	// requests counts what the side sent, and learns how it answers the referrers API.
	requests *registryhttp.Requests

	once   sync.Once
	err    error
	opts   []remote.Option
	puller *remote.Puller
}

// Engine copies tags from one repository to another.
type Engine struct {
	src, dst *side
	o        Options
	// jobs holds one token per registry operation under way.
	jobs   chan struct{}
	cache  *Cache
	pusher *remote.Pusher

	mu      sync.Mutex
	listing []string // the source's tags, listed once per Engine

	started  sync.Once
	startErr error
}

// New prepares the sessions for both sides.
func New(src, dst Endpoint, o Options) (*Engine, error) {
	if o.Backoff.Steps == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.Cache == nil {
		o.Cache = NewCache(0)
	}
	if o.MaxBlobBytes <= 0 {
		o.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if o.MinTransferRate == 0 {
		o.MinTransferRate = DefaultMinTransferRate
	}
	s, err := newSide(src, "source", o)
	if err != nil {
		return nil, err
	}
	d, err := newSide(dst, "target", o)
	if err != nil {
		return nil, err
	}
	if o.Jobs < 1 {
		o.Jobs = DefaultJobs
	}
	jobs := make(chan struct{}, o.Jobs)
	if o.Slots != nil {
		jobs = o.Slots.ch
	}
	return &Engine{src: s, dst: d, o: o, jobs: jobs, cache: o.Cache}, nil
}

// start connects the source (and, with target, the target) side, once each. The two
// handshakes run at the same time: neither waits for the other's round trips.
func (e *Engine) start(ctx context.Context, target bool) error {
	var wg sync.WaitGroup
	if target {
		wg.Go(func() { e.startTarget(ctx) })
	}
	err := e.src.connect(ctx, &e.cache.pool)
	wg.Wait()
	if err != nil {
		return describe(err, "source", e.src.repo.String())
	}
	if !target {
		return nil
	}
	return e.startErr
}

// startTarget connects the target side, once; later callers wait for the first.
func (e *Engine) startTarget(ctx context.Context) {
	e.started.Do(func() {
		if e.startErr = e.dst.connect(ctx, &e.cache.pool); e.startErr == nil {
			e.pusher, e.startErr = remote.NewPusher(e.dst.opts...)
		}
		if e.startErr != nil {
			e.startErr = describe(e.startErr, "target", e.dst.repo.String())
		}
	})
}

// Slots is a limit on registry operations under way at once that Engines can share.
type Slots struct{ ch chan struct{} }

// Registry is the registry of the endpoint's repository as a Cache keys it (e.g.
// index.docker.io for docker.io), or "" when the repository does not parse.
func (e Endpoint) Registry() string {
	repo, err := name.NewRepository(e.Repository)
	if err != nil {
		return ""
	}
	return repo.RegistryStr()
}

// NewSlots returns a limit of n operations at once (at least 1).
func NewSlots(n int) *Slots { return &Slots{ch: make(chan struct{}, max(n, 1))} }

func newSide(e Endpoint, which string, o Options) (*side, error) {
	cache := o.Cache
	var nameOpts []name.Option
	if e.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	repo, err := name.NewRepository(e.Repository, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("%s repository %q: %w", which, e.Repository, err)
	}
	var guard *registryhttp.DialGuard
	if which == "source" {
		guard = o.SourceGuard
	}
	base, err := cache.pool.Transport(e.CA, e.Insecure, e.HostAliases, guard)
	if err != nil {
		return nil, fmt.Errorf("%s CA: %w", which, err)
	}
	if e.Wrap != nil {
		base = e.Wrap(base)
	}
	if p := strings.TrimSuffix(e.PathPrefix, "/"); p != "" {
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			return nil, fmt.Errorf("%s path prefix %q: must be a clean absolute path such as /repository/my-docker/v2", which, e.PathPrefix)
		}
		base = registryhttp.WithPathPrefix(repo.RegistryStr(), p, base)
	}
	requests := &registryhttp.Requests{}
	base = registryhttp.Counting(registryhttp.Bounded(base, o.StallTimeout, o.AllowPrivateRedirects), requests)
	if which == "source" {
		// Outside the counting: a pull it refuses is never sent.
		base = cache.Rates.Wrap(repo.RegistryStr(), o.RateLimitFloor, base)
	}
	base = registryhttp.WithRetryAfter(base)
	return &side{repo: repo, endpoint: e, base: base, backoff: o.Backoff, shareable: e.Wrap == nil, requests: requests}, nil
}

// Requests returns the counts of HTTP requests the Engine has sent to the source and to
// the target registry.
func (e *Engine) Requests() (source, target *registryhttp.Requests) {
	return e.src.requests, e.dst.requests
}

// Tags lists the source's tags that sel selects.
//
// A selection of tag names only is answered without listing the repository (unless
// referrers are copied: their tags come from the listing); a named tag the source lacks
// then fails on its own, saying so, instead of being left out.
func (e *Engine) Tags(ctx context.Context, sel *tagselect.Selector) ([]string, error) {
	tags, _, err := e.TagsCounted(ctx, sel)
	return tags, err
}

// TagsCounted is Tags, with the count of the listed tags the selection left out by
// reason (none counted when the selection named its tags without a listing).
func (e *Engine) TagsCounted(ctx context.Context, sel *tagselect.Selector) ([]string, tagselect.LeftOut, error) {
	n, byCreated := sel.NewestByCreated()
	if named, only := sel.Named(); only && !e.o.Referrers {
		if !byCreated || len(named) <= n {
			return named, tagselect.LeftOut{}, nil
		}
		go e.startTarget(ctx)
		if err := e.start(ctx, false); err != nil {
			return nil, tagselect.LeftOut{}, err
		}
		kept, older, err := e.newestCreated(ctx, named, n)
		return kept, tagselect.LeftOut{Older: older}, err
	}
	// The target's handshake goes on while the source lists: the tag checks that follow
	// need it (Sync waits for it and reports its error).
	go e.startTarget(ctx)
	if err := e.start(ctx, false); err != nil {
		return nil, tagselect.LeftOut{}, err
	}
	all, err := e.list(ctx)
	if err != nil {
		return nil, tagselect.LeftOut{}, err
	}
	if e.o.Verify != nil {
		// Signatures and other referrer tags are not images to verify: they travel with the
		// verified tags they refer to.
		all = slices.DeleteFunc(slices.Clone(all), func(t string) bool { _, ok := referrerSubject(t); return ok })
	}
	tags, left := sel.FilterCounted(all)
	if byCreated && len(tags) > n {
		var older int
		if tags, older, err = e.newestCreated(ctx, tags, n); err != nil {
			return nil, tagselect.LeftOut{}, err
		}
		left.Older += older
	}
	return tags, left, nil
}

// list returns the source's tags, listed once per Engine.
func (e *Engine) list(ctx context.Context) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.listing != nil {
		return e.listing, nil
	}
	release, err := e.slot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	all, err := e.src.puller.List(registryhttp.WithListing(ctx), e.src.repo)
	if err != nil {
		return nil, describe(fmt.Errorf("listing tags: %w", err), "source", e.src.repo.String())
	}
	e.listing = all
	return all, nil
}

// slot waits for a registry operation token; release returns it.
func (e *Engine) slot(ctx context.Context) (release func(), err error) {
	select {
	case e.jobs <- struct{}{}:
		return func() { <-e.jobs }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Sync copies tags (up to Jobs of them under way at once), then, with Options.Referrers,
// what refers to them, and returns one Result per tag in order.
func (e *Engine) Sync(ctx context.Context, tags []string) []Result {
	if err := e.start(ctx, true); err != nil {
		out := make([]Result, len(tags))
		for i, tag := range tags {
			out[i] = Result{Tag: tag, Err: err}
		}
		return out
	}
	// Jobs workers take the tags in order: per-tag work starts when a worker is free, so
	// a hundred thousand tags cost a hundred thousand results, not as many goroutines.
	runs := make([]*tagRun, len(tags))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(e.o.Jobs, len(tags)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(tags); i = int(next.Add(1) - 1) {
				if err := ctx.Err(); err != nil {
					runs[i] = &tagRun{res: Result{Tag: tags[i], Err: err}}
					continue
				}
				run := e.copyTag(ctx, tags[i], true)
				run.res.Err = compact(run.res.Err) // kept for the whole run: only what it says
				runs[i] = run
			}
		})
	}
	wg.Wait()
	if e.o.Referrers && !e.o.DryRun {
		e.syncReferrers(ctx, runs)
	}
	out := make([]Result, len(runs))
	for i, r := range runs {
		out[i] = r.res
		out[i].Err = compact(r.res.Err) // referrer errors came later
	}
	return out
}

// refIn is tag of repo, or the manifest of that digest when tag is one (sha256:...): an
// image run by digest is copied by digest, without a tag.
func refIn(repo name.Repository, tag string) name.Reference {
	if strings.HasPrefix(tag, "sha256:") {
		return repo.Digest(tag)
	}
	return repo.Tag(tag)
}

// CopyTag makes the target's tag point at the source's manifest, copying what is missing
// (and, with Options.Referrers, what refers to it).
func (e *Engine) CopyTag(ctx context.Context, tag string) Result {
	return e.Sync(ctx, []string{tag})[0]
}

// tagRun is a tag's copy and what its referrers phase needs.
type tagRun struct {
	res Result
	// subjects are the digests whose referrers belong to this tag.
	subjects []v1.Hash
	// unread is the source index whose children are not among subjects yet (the tag was
	// up to date, so the index was never read).
	unread *v1.Hash
}

// copyTag syncs one tag: a HEAD on each side, and a copy when they differ. filter applies
// Options.Platforms (not to referrer tags, whose indexes list artifacts).
func (e *Engine) copyTag(ctx context.Context, tag string, filter bool) *tagRun {
	run := &tagRun{res: Result{Tag: tag}}
	res := &run.res
	srcRef, dstRef := refIn(e.src.repo, tag), refIn(e.dst.repo, tag)
	release, err := e.slot(ctx)
	if err != nil {
		res.Err = err
		return run
	}
	// The two sides are asked at the same time: an up-to-date tag costs one round trip.
	var dstDesc *v1.Descriptor
	var dstErr error
	var wg sync.WaitGroup
	wg.Go(func() { dstDesc, dstErr = e.dst.puller.Head(ctx, dstRef) })
	src, err := e.resolve(ctx, srcRef, filter)
	wg.Wait()
	release()
	if err != nil {
		res.Err = describe(err, "source", srcRef.String())
		return run
	}
	res.SourceDigest = src.desc.Digest.String()
	want := run.findSubjects(e.cache, src)
	verified := filter && e.o.Verify != nil
	switch {
	case dstErr == nil && dstDesc.Digest == want:
		res.TargetDigest, res.UpToDate = want.String(), true
		if verified && !e.o.DryRun {
			e.copySignature(ctx, run, src.desc.Digest) // one HEAD a side when it is there
		}
	case dstErr != nil && !isNotFound(dstErr):
		res.Err = describe(dstErr, "target", dstRef.String())
	case verified:
		// Only a tag whose signature verifies is copied, and its signature first: a tag in
		// the target always has the signature the far side of a directory verifies again,
		// even when the copy stops between the two.
		if res.Err = e.verify(ctx, tag, src.desc.Digest); res.Err == nil && !e.o.DryRun {
			if e.copySignature(ctx, run, src.desc.Digest); res.Err == nil {
				e.push(ctx, run, src, dstRef, want)
			}
		}
	case !e.o.DryRun:
		e.push(ctx, run, src, dstRef, want)
	}
	return run
}

// copySignature copies the cosign signature tag of digest along with a verified tag.
func (e *Engine) copySignature(ctx context.Context, run *tagRun, digest v1.Hash) {
	sig := e.copyTag(ctx, digest.Algorithm+"-"+digest.Hex+".sig", false)
	run.res.Referrers++
	run.res.Bytes += sig.res.Bytes
	if sig.res.Err != nil {
		run.res.Err = fmt.Errorf("copying its signature: %w", sig.res.Err)
	}
}

// resolvedTag is a source tag as copyTag found it.
type resolvedTag struct {
	desc *v1.Descriptor
	// fetched is the source manifest when it had to be read already.
	fetched *remote.Descriptor
	// pushed is what the target gets when it is not the source's bytes (a filtered index).
	pushed *manifest
}

// resolve finds a source tag's digest with a HEAD or, when platforms are filtered, reads
// the index with a GET instead (the filtered index's digest needs it).
func (e *Engine) resolve(ctx context.Context, ref name.Reference, filter bool) (resolvedTag, error) {
	if !filter || len(e.o.Platforms) == 0 {
		desc, err := e.src.puller.Head(ctx, ref)
		return resolvedTag{desc: desc}, err
	}
	fetched, err := e.src.puller.Get(ctx, ref)
	if err != nil {
		return resolvedTag{}, err
	}
	r := resolvedTag{desc: &fetched.Descriptor, fetched: fetched}
	if fetched.MediaType.IsIndex() {
		r.pushed, err = e.filter(fetched)
	}
	return r, err
}

// findSubjects sets the digests whose referrers belong to the tag, and returns the digest
// the target must have.
func (run *tagRun) findSubjects(cache *Cache, src resolvedTag) v1.Hash {
	if src.pushed != nil {
		run.subjects = src.pushed.children()
		return src.pushed.digest
	}
	run.subjects = []v1.Hash{src.desc.Digest}
	if src.desc.MediaType.IsIndex() {
		if children, ok := cache.children(src.desc.Digest); ok {
			run.subjects = append(run.subjects, children...)
		} else {
			run.unread = &src.desc.Digest
		}
	}
	return src.desc.Digest
}

// push copies the tag's manifest tree to the target, reading the source manifest first
// when it was not read yet.
func (e *Engine) push(ctx context.Context, run *tagRun, src resolvedTag, dstRef name.Reference, want v1.Hash) {
	res := &run.res
	pushed := src.pushed
	if pushed == nil {
		fetched := src.fetched
		if fetched == nil {
			var err error
			if fetched, err = e.getManifest(ctx, e.src.repo.Digest(res.SourceDigest)); err != nil {
				res.Err = describe(err, "source", refIn(e.src.repo, res.Tag).String())
				return
			}
		}
		pushed = &manifest{raw: fetched.Manifest, mediaType: fetched.MediaType, digest: fetched.Digest}
	}
	p := e.newProgress(res.Tag)
	ctx = registryhttp.CountUploads(ctx, p.add)
	children, err := e.pushTree(ctx, pushed, dstRef, p)
	if isBlobUnknown(err) {
		// The Cache believed the target held a blob it no longer has (garbage collection,
		// retention): forget what it believed of this repository and check for real.
		e.cache.forgetRepo(e.dst.repo.RegistryStr(), e.dst.repo.RepositoryStr())
		children, err = e.pushTree(ctx, pushed, dstRef, p)
	}
	res.Bytes = p.sent.Load()
	p.report()
	if err != nil {
		res.Err = err
		return
	}
	res.TargetDigest = want.String()
	if pushed.mediaType.IsIndex() {
		e.cache.setChildren(pushed.digest, children)
		if run.unread != nil {
			run.subjects, run.unread = append(run.subjects, children...), nil
		}
	}
}

// getManifest reads a manifest from the source within a job slot. go-containerregistry
// retries requests that fail before an answer; an answer whose body breaks off is retried
// here, with the same backoff.
func (e *Engine) getManifest(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	release, err := e.slot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	b := e.o.Backoff
	for {
		d, err := e.src.puller.Get(ctx, ref)
		if err == nil || b.Steps <= 1 || !bodyBrokeOff(err) {
			return d, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(b.Step()):
		}
	}
}

// bodyBrokeOff reports a response body that ended before its length: the connection broke
// after the answer began.
func bodyBrokeOff(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// filter keeps the manifests of the index whose platform satisfies one of the wanted
// platforms.
func (e *Engine) filter(d *remote.Descriptor) (*manifest, error) {
	idx, err := d.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	kept := *im
	kept.Manifests = nil
	for _, m := range im.Manifests {
		if e.wanted(m) {
			kept.Manifests = append(kept.Manifests, m)
		}
	}
	if len(kept.Manifests) == 0 {
		return nil, fmt.Errorf("no manifest of the index matches platforms %v", e.o.Platforms)
	}
	return newManifest(&kept, d.MediaType)
}

func (e *Engine) wanted(d v1.Descriptor) bool {
	if d.Platform == nil {
		return false
	}
	for _, p := range e.o.Platforms {
		if d.Platform.Satisfies(p) {
			return true
		}
	}
	return false
}

// tagProgress adds up one tag's copy for Options.Progress.
type tagProgress struct {
	mu    sync.Mutex // orders reports: complete never goes back
	last  int64
	tag   string
	sent  atomic.Int64 // bytes on the wire to the target
	found atomic.Int64 // bytes the target had already or mounted
	total atomic.Int64
	fn    func(tag string, complete, total int64)
}

func (e *Engine) newProgress(tag string) *tagProgress {
	return &tagProgress{tag: tag, fn: e.o.Progress}
}

// add counts n bytes sent.
func (p *tagProgress) add(n int64) {
	p.sent.Add(n)
	p.report()
}

func (p *tagProgress) report() {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	done := p.sent.Load() + p.found.Load()
	if done < p.last {
		return
	}
	p.last = done
	p.fn(p.tag, done, max(p.total.Load(), done))
}

// Summary counts results.
type Summary struct {
	Copied, UpToDate, Failed int
	// Referrers counts the referrer tags and manifests checked.
	Referrers int
	Bytes     int64
	Duration  time.Duration
}

// Summarize counts results.
func Summarize(results []Result, took time.Duration) Summary {
	s := Summary{Duration: took}
	for _, r := range results {
		switch {
		case r.Err != nil:
			s.Failed++
		case r.UpToDate:
			s.UpToDate++
		default:
			s.Copied++
		}
		s.Bytes += r.Bytes
		s.Referrers += r.Referrers
	}
	return s
}
