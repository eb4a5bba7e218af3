// Package imagesync copies selected tags of an image repository into another registry on
// go-containerregistry: manifests byte for byte (so digests, multi-platform indexes
// included, stay the same), blobs streamed from registry to registry.
//
// An up-to-date tag costs exactly one manifest HEAD on each side: the Engine keeps its
// registry sessions (pings, tokens) between runs.
package imagesync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regwire/regwire/internal/cabundle"
	"github.com/regwire/regwire/internal/tagselect"
)

// Endpoint is one side of a copy: a repository and how to reach its registry.
type Endpoint struct {
	// Repository such as nexus.local/my-docker/busybox.
	Repository string
	// Auth authenticates to the registry; nil means anonymous.
	Auth authn.Authenticator
	// CA is PEM CA certificates to trust instead of the system roots.
	CA []byte
	// Insecure skips TLS verification and allows plain HTTP.
	Insecure bool
	// Wrap, when set, wraps the transport regwire builds (tests count or break requests
	// with it).
	Wrap func(http.RoundTripper) http.RoundTripper
}

// Options tune an Engine.
type Options struct {
	// Jobs bounds concurrent tags; blob concurrency within a tag follows go-containerregistry.
	Jobs int
	// Progress, when set, is called as bytes of a tag reach the target.
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
}

// DefaultBackoff retries six times over about half a minute: at a 20% failure rate a
// request still gives up less than once in 15,000.
var DefaultBackoff = remote.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 6}

// maxRetryAfter bounds how long a registry's Retry-After can hold one request.
const maxRetryAfter = 30 * time.Second

// Result is what happened to one tag.
type Result struct {
	Tag string
	// SourceDigest and TargetDigest of the tag's manifest.
	SourceDigest, TargetDigest string
	// UpToDate is true when the target already had the source's digest.
	UpToDate bool
	// Bytes uploaded to the target.
	Bytes int64
	// Err says why the tag failed.
	Err error
}

// side is an Endpoint ready to use.
type side struct {
	repo   name.Repository
	opts   []remote.Option
	puller *remote.Puller
}

// Engine copies tags from one repository to another.
type Engine struct {
	src, dst side
	o        Options
}

// New prepares the sessions for both sides.
func New(src, dst Endpoint, o Options) (*Engine, error) {
	if o.Backoff.Steps == 0 {
		o.Backoff = DefaultBackoff
	}
	s, err := newSide(src, "source", o.Backoff)
	if err != nil {
		return nil, err
	}
	d, err := newSide(dst, "target", o.Backoff)
	if err != nil {
		return nil, err
	}
	if o.Jobs < 1 {
		o.Jobs = 4
	}
	return &Engine{src: s, dst: d, o: o}, nil
}

func newSide(e Endpoint, which string, backoff remote.Backoff) (side, error) {
	var nameOpts []name.Option
	if e.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	repo, err := name.NewRepository(e.Repository, nameOpts...)
	if err != nil {
		return side{}, fmt.Errorf("%s repository %q: %w", which, e.Repository, err)
	}
	base := remote.DefaultTransport
	if len(e.CA) > 0 || e.Insecure {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: e.Insecure} //nolint:gosec // only when asked
		if len(e.CA) > 0 {
			b, err := cabundle.Parse(e.CA)
			if err != nil {
				return side{}, fmt.Errorf("%s CA: %w", which, err)
			}
			t.TLSClientConfig.RootCAs = b.Pool()
		}
		base = t
	}
	if e.Wrap != nil {
		base = e.Wrap(base)
	}
	base = retryAfterTransport{next: countingTransport{next: base}}
	auth := e.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	opts := []remote.Option{remote.WithAuth(auth), remote.WithTransport(base), remote.WithRetryBackoff(backoff)}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return side{}, err
	}
	return side{repo: repo, opts: opts, puller: p}, nil
}

// Tags lists the source's tags that sel selects.
func (e *Engine) Tags(ctx context.Context, sel *tagselect.Selector) ([]string, error) {
	all, err := e.src.puller.List(ctx, e.src.repo)
	if err != nil {
		return nil, describe(fmt.Errorf("listing tags: %w", err), "source", e.src.repo.String())
	}
	return sel.Filter(all), nil
}

// Sync copies tags, Jobs at a time, and returns one Result per tag in order.
func (e *Engine) Sync(ctx context.Context, tags []string) []Result {
	out := make([]Result, len(tags))
	sem := make(chan struct{}, e.o.Jobs)
	var wg sync.WaitGroup
	for i, tag := range tags {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				out[i] = e.CopyTag(ctx, tag)
			case <-ctx.Done():
				out[i] = Result{Tag: tag, Err: ctx.Err()}
			}
		}()
	}
	wg.Wait()
	return out
}

// CopyTag makes the target's tag point at the source's manifest, copying what is missing.
func (e *Engine) CopyTag(ctx context.Context, tag string) Result {
	res := Result{Tag: tag}
	srcRef, dstRef := e.src.repo.Tag(tag), e.dst.repo.Tag(tag)

	var (
		srcDesc  *v1.Descriptor
		filtered v1.ImageIndex // the index to push when platforms filter it
		desc     *remote.Descriptor
		err      error
	)
	if len(e.o.Platforms) == 0 {
		d, err := e.src.puller.Head(ctx, srcRef)
		if err != nil {
			res.Err = describe(err, "source", srcRef.String())
			return res
		}
		srcDesc = d
	} else {
		// The filtered index's digest needs the source index: one GET instead of the HEAD.
		d, err := e.src.puller.Get(ctx, srcRef)
		if err != nil {
			res.Err = describe(err, "source", srcRef.String())
			return res
		}
		desc, srcDesc = d, &d.Descriptor
		if d.MediaType.IsIndex() {
			idx, err := d.ImageIndex()
			if err != nil {
				res.Err = describe(err, "source", srcRef.String())
				return res
			}
			if filtered, err = e.filter(idx); err != nil {
				res.Err = describe(err, "source", srcRef.String())
				return res
			}
		}
	}
	res.SourceDigest = srcDesc.Digest.String()
	want := srcDesc.Digest
	if filtered != nil {
		if want, err = filtered.Digest(); err != nil {
			res.Err = err
			return res
		}
	}
	if dstDesc, err := e.dst.puller.Head(ctx, dstRef); err == nil && dstDesc.Digest == want {
		res.TargetDigest, res.UpToDate = dstDesc.Digest.String(), true
		if e.o.Referrers && !e.o.DryRun {
			res.Bytes, res.Err = e.copyReferrers(ctx, srcDesc.Digest)
		}
		return res
	} else if err != nil && !isNotFound(err) {
		res.Err = describe(err, "target", dstRef.String())
		return res
	}
	if e.o.DryRun {
		return res
	}
	if desc == nil {
		if desc, err = e.src.puller.Get(ctx, srcRef.Context().Digest(res.SourceDigest)); err != nil {
			res.Err = describe(err, "source", srcRef.String())
			return res
		}
	}
	var push remote.Taggable = desc
	if filtered != nil {
		push = filtered
	}

	// Bytes are counted on the wire (countingTransport); go-containerregistry's own
	// progress misses the last chunk of each streamed blob. Its totals are right and feed
	// the progress callback.
	var sent atomic.Int64
	var total atomic.Int64
	report := func() {
		if e.o.Progress != nil {
			e.o.Progress(tag, sent.Load(), max(total.Load(), sent.Load()))
		}
	}
	ctx = context.WithValue(ctx, sentKey{}, &byteCounter{n: &sent, changed: report})
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range updates {
			if u.Total > total.Load() {
				total.Store(u.Total)
			}
		}
	}()
	pusher, err := remote.NewPusher(append(e.dst.opts, remote.WithContext(ctx), remote.WithProgress(updates))...)
	if err != nil {
		close(updates)
		<-done
		res.Err = err
		return res
	}
	err = pusher.Push(ctx, dstRef, push)
	// Unlike remote.Write, Pusher.Push leaves the progress channel open; it sends nothing
	// once Push returns.
	close(updates)
	<-done
	res.Bytes = sent.Load()
	report()
	if err != nil {
		res.Err = describe(err, "target", dstRef.String())
		return res
	}
	res.TargetDigest = want.String()
	if e.o.Referrers && filtered == nil {
		n, err := e.copyReferrers(ctx, srcDesc.Digest)
		res.Bytes += n
		res.Err = err
	}
	return res
}

// cosignSuffixes are the tags cosign attaches to sha256-<hex>.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// copyReferrers copies the OCI referrers of digest d and cosign's tags for it, returning the
// bytes uploaded.
func (e *Engine) copyReferrers(ctx context.Context, d v1.Hash) (int64, error) {
	var total int64
	copyManifest := func(ref name.Reference, target name.Reference) error {
		if got, err := e.dst.puller.Head(ctx, target); err == nil {
			if want, err := e.src.puller.Head(ctx, ref); err == nil && want.Digest == got.Digest {
				return nil
			}
		}
		desc, err := e.src.puller.Get(ctx, ref)
		if err != nil {
			return describe(err, "source", ref.String())
		}
		var sent atomic.Int64
		pctx := context.WithValue(ctx, sentKey{}, &byteCounter{n: &sent, changed: func() {}})
		pusher, err := remote.NewPusher(append(e.dst.opts, remote.WithContext(pctx))...)
		if err != nil {
			return err
		}
		if err := pusher.Push(pctx, target, desc); err != nil {
			return describe(err, "target", target.String())
		}
		total += sent.Load()
		return nil
	}

	subject := e.src.repo.Digest(d.String())
	idx, err := remote.Referrers(subject, append(e.src.opts, remote.WithContext(ctx))...)
	if err != nil {
		return total, describe(fmt.Errorf("listing referrers: %w", err), "source", subject.String())
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return total, err
	}
	for _, m := range im.Manifests {
		if err := copyManifest(e.src.repo.Digest(m.Digest.String()), e.dst.repo.Digest(m.Digest.String())); err != nil {
			return total, err
		}
	}
	for _, suffix := range cosignSuffixes {
		tag := d.Algorithm + "-" + d.Hex + suffix
		if _, err := e.src.puller.Head(ctx, e.src.repo.Tag(tag)); err != nil {
			if isNotFound(err) {
				continue
			}
			return total, describe(err, "source", e.src.repo.Tag(tag).String())
		}
		if err := copyManifest(e.src.repo.Tag(tag), e.dst.repo.Tag(tag)); err != nil {
			return total, err
		}
	}
	return total, nil
}

// filter keeps the manifests of idx whose platform satisfies one of the wanted platforms.
func (e *Engine) filter(idx v1.ImageIndex) (v1.ImageIndex, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	kept := 0
	for _, m := range im.Manifests {
		if e.wanted(m) {
			kept++
		}
	}
	if kept == 0 {
		return nil, fmt.Errorf("no manifest of the index matches platforms %v", e.o.Platforms)
	}
	return mutate.RemoveManifests(idx, func(d v1.Descriptor) bool { return !e.wanted(d) }), nil
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

// retryAfterTransport waits as long as a registry's Retry-After asks (at most
// maxRetryAfter) before handing back a 429 or 503, so that go-containerregistry's retry
// comes after the registry is ready again.
type retryAfterTransport struct{ next http.RoundTripper }

func (t retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return resp, err
	}
	wait := retryAfter(resp.Header.Get("Retry-After"), time.Now())
	if wait <= 0 {
		return resp, nil
	}
	timer := time.NewTimer(min(wait, maxRetryAfter))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
	}
	return resp, nil
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

// sentKey carries a *byteCounter in a request context.
type sentKey struct{}

// byteCounter adds up request body bytes of one tag's uploads.
type byteCounter struct {
	n       *atomic.Int64
	changed func()
}

// countingTransport counts the bytes of upload bodies for the tag in the request context.
type countingTransport struct{ next http.RoundTripper }

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c, ok := r.Context().Value(sentKey{}).(*byteCounter)
	if ok && r.Body != nil && r.Body != http.NoBody && (r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodPost) {
		r = r.Clone(r.Context())
		r.Body = &countingBody{ReadCloser: r.Body, c: c}
	}
	return t.next.RoundTrip(r)
}

type countingBody struct {
	io.ReadCloser
	c *byteCounter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.n.Add(int64(n))
		b.c.changed()
	}
	return n, err
}

// isNotFound reports a registry's 404 (HEAD answers carry no error body).
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// SideError is a failure on one side of a copy.
type SideError struct {
	// Side is "source" or "target".
	Side string
	// Ref is the reference being read or written.
	Ref string
	// StatusCode is the registry's HTTP status, 0 when no answer came (DNS, TCP, TLS).
	StatusCode int
	Err        error
}

func (e *SideError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s %s: %s (HTTP %d): %v", e.Side, e.Ref, http.StatusText(e.StatusCode), e.StatusCode, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Side, e.Ref, e.Err)
}

func (e *SideError) Unwrap() error { return e.Err }

// describe names the registry side, the reference and the HTTP status of an error.
func describe(err error, which, ref string) error {
	se := &SideError{Side: which, Ref: ref, Err: err}
	var terr *transport.Error
	if errors.As(err, &terr) {
		se.StatusCode = terr.StatusCode
	}
	return se
}

// Summary counts results.
type Summary struct {
	Copied, UpToDate, Failed int
	Bytes                    int64
	Duration                 time.Duration
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
	}
	return s
}
