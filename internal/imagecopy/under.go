package imagecopy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
)

// Under is a copy of every repository below a source prefix: the source registry's
// catalog is read, the repositories whose path is the prefix or starts with it and a slash
// are kept (and, with Pattern, those whose path below the prefix it matches), and each is
// copied to the target with the prefix replaced by the target's repository:
// registry.example/team/app/api under registry.example/team goes to my-docker/app/api
// when the target is my-docker (strip the prefix), to my-docker/team/app/api when it is
// my-docker/team (keep it).
type Under struct {
	// Source is the prefix: a registry host alone (every repository), or host/path.
	Source Endpoint
	// Target is the repository the prefix is replaced by.
	Target Endpoint
	// Pattern, when set, keeps only the repositories whose path below the prefix it
	// matches (RE2, anchored at both ends).
	Pattern *regexp.Regexp
	// Allow, when set, is asked for each target repository (host/path) before anything is
	// read of it; an error fails that repository only.
	Allow func(target string) error
}

// RepoResult is what happened to one repository of an Under copy.
type RepoResult struct {
	// Path is the repository's path below the prefix ("" for the prefix itself).
	Path string
	// Err is why the repository could not be copied as a whole (its tags not listed, the
	// target not allowed); its tags' own failures are in Results.
	Err     error
	LeftOut tagselect.LeftOut
	Results []Result
	// Requests the repository's Engine sent to the source and to the target.
	SourceRequests, TargetRequests *registryhttp.Requests
}

// ErrNoCatalog says that a registry does not list its repositories.
var ErrNoCatalog = errors.New("the registry does not list its repositories")

// splitPrefix returns the registry and the path of a prefix such as registry.example/team
// (no path for a registry alone, docker.io's "library" kept as written).
func splitPrefix(prefix string, insecure bool) (name.Registry, string, error) {
	host, p, _ := strings.Cut(strings.TrimSuffix(prefix, "/"), "/")
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return name.Registry{}, "", fmt.Errorf("source prefix %q: %w", prefix, err)
	}
	return reg, p, nil
}

// Repositories lists the paths below the prefix of the source's repositories, sorted,
// through the registry's catalog (GET /v2/_catalog, page by page). A registry without a
// catalog (Docker Hub, GHCR, most clouds) fails with ErrNoCatalog saying so.
func (u *Under) Repositories(ctx context.Context, o Options) ([]string, error) {
	reg, prefix, err := splitPrefix(u.Source.Repository, u.Source.Insecure)
	if err != nil {
		return nil, err
	}
	if o.Cache == nil {
		o.Cache = NewCache(0)
	}
	if o.Backoff.Steps == 0 {
		o.Backoff = DefaultBackoff
	}
	// A side whose repository is a placeholder: the catalog needs only the registry's session.
	ep := u.Source
	ep.Repository = reg.Name() + "/catalog"
	s, err := newSide(ep, "source", o)
	if err != nil {
		return nil, err
	}
	if err := s.connect(ctx, &o.Cache.pool); err != nil {
		return nil, describe(err, "source", reg.Name())
	}
	all, err := s.puller.Catalog(registryhttp.WithListing(ctx), reg)
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && (terr.StatusCode == http.StatusNotFound || terr.StatusCode == http.StatusUnauthorized ||
			terr.StatusCode == http.StatusForbidden || terr.StatusCode == http.StatusMethodNotAllowed) {
			return nil, &SideError{Side: "source", Ref: reg.Name(), StatusCode: terr.StatusCode,
				Err: fmt.Errorf("%w (GET /v2/_catalog: %d): name its repositories one by one, or copy from a registry that lists them (distribution, Nexus, Harbor, zot do)", ErrNoCatalog, terr.StatusCode)}
		}
		return nil, describe(fmt.Errorf("listing repositories: %w", err), "source", reg.Name())
	}
	var paths []string
	for _, repo := range all {
		var rel string
		switch {
		case prefix == "":
			rel = repo
		case repo == prefix:
			rel = ""
		case strings.HasPrefix(repo, prefix+"/"):
			rel = repo[len(prefix)+1:]
		default:
			continue
		}
		if u.Pattern != nil && !u.Pattern.MatchString(rel) {
			continue
		}
		paths = append(paths, rel)
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}

// at returns the source and target endpoints of the repository path below the prefix.
func (u *Under) at(path string) (src, dst Endpoint) {
	src, dst = u.Source, u.Target
	if path != "" {
		src.Repository = strings.TrimSuffix(src.Repository, "/") + "/" + path
		dst.Repository = strings.TrimSuffix(dst.Repository, "/") + "/" + path
	}
	return src, dst
}

// Sync lists the repositories below the prefix and copies each one's selected tags:
// repositories one after another on as many workers as o's operations allow, all of them
// under the one limit of o.Slots (or o.Jobs) and one Cache, so that a layer several
// repositories share crosses the wire once and is mounted into the others. It returns one
// RepoResult per repository, in path order; the error is the listing's.
func (u *Under) Sync(ctx context.Context, sel *tagselect.Selector, o Options) ([]RepoResult, error) {
	if o.Cache == nil {
		o.Cache = NewCache(0)
	}
	if o.Jobs < 1 {
		o.Jobs = DefaultJobs
	}
	if o.Slots == nil {
		o.Slots = NewSlots(o.Jobs)
	}
	paths, err := u.Repositories(ctx, o)
	if err != nil {
		return nil, err
	}
	out := make([]RepoResult, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	// A repository's listing and checks wait for slots like everything else: more workers
	// than operations keep the slots busy while some repositories list their tags.
	for range min(2*o.Jobs, len(paths)) {
		wg.Go(func() {
			for i := range next {
				out[i] = u.syncOne(ctx, paths[i], sel, o)
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	return out, nil
}

func (u *Under) syncOne(ctx context.Context, path string, sel *tagselect.Selector, o Options) RepoResult {
	res := RepoResult{Path: path}
	src, dst := u.at(path)
	if u.Allow != nil {
		if res.Err = u.Allow(dst.Repository); res.Err != nil {
			return res
		}
	}
	if err := ctx.Err(); err != nil {
		res.Err = err
		return res
	}
	if progress := o.Progress; progress != nil && path != "" {
		o.Progress = func(tag string, complete, total int64) { progress(path+":"+tag, complete, total) }
	}
	eng, err := New(src, dst, o)
	if err != nil {
		res.Err = err
		return res
	}
	res.SourceRequests, res.TargetRequests = eng.Requests()
	tags, left, err := eng.TagsCounted(ctx, sel)
	if err != nil {
		res.Err = compact(err)
		return res
	}
	res.LeftOut = left
	if len(tags) > 0 {
		res.Results = eng.Sync(ctx, tags)
	}
	return res
}

// Flatten turns an Under copy's results into one Result per tag, named path:tag (the tag
// alone for the prefix's own repository), and one per repository that failed as a whole,
// named by its path.
func Flatten(repos []RepoResult) []Result {
	var out []Result
	for _, r := range repos {
		if r.Err != nil {
			out = append(out, Result{Tag: r.Path, Err: r.Err})
			continue
		}
		for _, res := range r.Results {
			if r.Path != "" {
				res.Tag = r.Path + ":" + res.Tag
			}
			out = append(out, res)
		}
	}
	return out
}
