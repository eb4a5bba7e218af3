package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/regwire/regwire/internal/blobcache"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
)

type syncFlags struct {
	tags               []string
	tagPattern, semver string
	exclude            string
	newest             int
	newestBy           string
	allTags            bool
	platforms          []string
	referrers          bool
	jobs               int
	bounds             imagecopy.Bounds
	srcCA, dstCA       string
	insecure, dryRun   bool
	progress           string
	output             string
	file               string
	blobCache          string
	noBlobCache        bool
	prefix             bool
	repositoryPattern  string
	to                 string
	verifyKeys         []string
	// keys are the --verify-key files, read.
	keys *imagecopy.Keys
}

func newSyncCommand() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "sync SRC DST | sync -f FILE",
		Short: "Copy image tags from one registry repository to another, or run the ImageSyncs of a file once",
		Long: `Copies the selected tags of repository SRC to repository DST, e.g.

  regwire sync docker.io/library/busybox nexus.local/my-docker/busybox --tags 1.36,latest

Manifests are copied byte for byte, so digests (multi-platform indexes included) stay
the same; a tag that is already up to date costs one manifest HEAD per registry.
Credentials come from the docker config (~/.docker/config.json, $DOCKER_CONFIG) like
docker and crane. Exits non-zero when any tag fails.

With -f, runs every ImageSync manifest of FILE ("-" for standard input) once, without a
cluster: all repositories at once under one --jobs limit, a blob shared by several of them
transferred once and mounted into the others. Each ImageSync names its target with
spec.target.image (registryMirrorRef and credentialsSecretRef need the controller).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.file != "" {
				return usage(cobra.NoArgs(cmd, args))
			}
			return usage(cobra.ExactArgs(2)(cmd, args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.output != "text" && f.output != "json" {
				return usage(fmt.Errorf("--output %q: want text or json", f.output))
			}
			if len(f.verifyKeys) > 0 {
				named := map[string][]byte{}
				for _, file := range f.verifyKeys {
					b, err := os.ReadFile(file)
					if err != nil {
						return usage(fmt.Errorf("--verify-key: %w", err))
					}
					named[file] = b
				}
				var err error
				if f.keys, err = imagecopy.ParseKeys(named); err != nil {
					return usage(fmt.Errorf("--verify-key %w", err))
				}
			}
			if f.to != "" && f.file == "" {
				return usage(errors.New("--to goes with -f; for one repository write the directory as the target: regwire sync SRC oci:PATH"))
			}
			if f.file != "" {
				if len(f.tags) > 0 || f.tagPattern != "" || f.semver != "" || f.exclude != "" || f.newest != 0 || f.allTags || len(f.platforms) > 0 || f.referrers || f.srcCA != "" || f.dstCA != "" {
					return usage(errors.New("with -f the file's ImageSyncs select tags, platforms, referrers and CAs; drop those flags"))
				}
				syncs, err := readSyncFile(f.file, f.insecure)
				if err != nil {
					return usage(err)
				}
				if f.to == "" {
					return runSyncFile(cmd.Context(), cmd.OutOrStdout(), syncs, f)
				}
				return runSyncFileToDir(cmd, syncs, f)
			}
			return runSync(cmd, args[0], args[1], f)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.tags, "tags", nil, "tags to copy, comma-separated")
	fl.StringVar(&f.tagPattern, "tag-pattern", "", "copy tags matching this RE2 expression (anchored)")
	fl.StringVar(&f.semver, "semver", "", `copy tags in this semantic version range, e.g. ">=1.36 <2"`)
	fl.StringVar(&f.exclude, "exclude", "", `leave out tags matching this RE2 expression (anchored), whatever selected them, e.g. ".*-rc.*|latest"`)
	fl.IntVar(&f.newest, "newest", 0, "keep only the N highest semantic versions of the selected tags (tags that are not versions are then left out)")
	fl.StringVar(&f.newestBy, "newest-by", "version", "how --newest orders tags: version (the highest semantic versions) or created (the images created last; reads each candidate's config)")
	fl.BoolVar(&f.allTags, "all-tags", false, "copy every tag")
	fl.BoolVar(&f.prefix, "prefix", false, "SRC is a prefix (registry.example/team, or a registry alone): copy every repository the registry's catalog lists below it, to DST with the prefix replaced by DST")
	fl.StringVar(&f.repositoryPattern, "repository-pattern", "", "with --prefix, copy only the repositories whose path below the prefix matches this RE2 expression (anchored)")
	fl.StringArrayVar(&f.platforms, "platform", nil, "keep only this platform of multi-platform images (os/arch[/variant]); repeatable")
	fl.BoolVar(&f.referrers, "referrers", false, "also copy signatures, SBOMs and attestations")
	fl.StringArrayVar(&f.verifyKeys, "verify-key", nil, "copy only tags with a cosign signature that this PEM public key (cosign.pub) verifies, offline; repeatable: any of the keys will do")
	fl.IntVar(&f.jobs, "jobs", imagecopy.DefaultJobs, "registry operations at once: tag checks, manifest copies and blob transfers share it")
	addBoundsFlags(fl, &f.bounds)
	fl.StringVar(&f.srcCA, "src-ca", "", "PEM file of CA certificates for the source registry")
	fl.StringVar(&f.dstCA, "dst-ca", "", "PEM file of CA certificates for the target registry")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP and skip TLS verification on both registries")
	fl.BoolVar(&f.dryRun, "dry-run", false, "only report which tags would be copied")
	fl.StringVarP(&f.file, "file", "f", "", `ImageSync manifests to run once ("-" reads standard input)`)
	fl.StringVar(&f.to, "to", "", "with -f, copy every ImageSync's tags into the OCI image layout directory oci:PATH instead of its target, under the target's repository path, to carry across an air gap (then: regwire sync --prefix oci:PATH REGISTRY --all-tags)")
	fl.StringVar(&f.progress, "progress", "auto", "progress output: auto (bars on a terminal), bars or lines")
	fl.StringVarP(&f.output, "output", "o", "text", "result format: text (a line per tag and a summary) or json (one document when the run ends, for pipelines; no progress bars)")
	fl.StringVar(&f.blobCache, "blob-cache", "", "file remembering, across runs, which target repositories hold which blobs, to mount shared layers instead of uploading them again (default $XDG_CACHE_HOME/regwire/blobs.db); the registry checks every mount")
	fl.BoolVar(&f.noBlobCache, "no-blob-cache", false, "neither read nor write the blob cache")
	return cmd
}

// useBlobCache gives cache what earlier runs learned about the registries (read when
// the first blob moves) and returns the function that saves what this run learned. A
// cache that cannot be used is a warning on errOut, never a failure: it only ever saves
// transfers.
func useBlobCache(f syncFlags, registries []string, cache *imagecopy.Cache, errOut io.Writer) (save func()) {
	if f.noBlobCache || f.dryRun {
		return func() {}
	}
	path := f.blobCache
	if path == "" {
		p, err := blobcache.DefaultPath()
		if err != nil {
			fmt.Fprintf(errOut, "warning: no blob cache (%v); --blob-cache names a file\n", err)
			return func() {}
		}
		path = p
	}
	// Read when the first blob has to move: a run that finds everything up to date never
	// opens the file.
	cache.Recall(func(remember func(string, v1.Hash, string, time.Time)) {
		hints, err := blobcache.Load(path, registries, time.Now())
		if err != nil {
			fmt.Fprintf(errOut, "warning: running without the blob cache: %v\n", err)
		}
		for _, h := range hints {
			if d, err := v1.NewHash(h.Digest); err == nil {
				remember(h.Registry, d, h.Repo, h.At)
			}
		}
	})
	return func() {
		var learned []blobcache.Hint
		cache.Learned(func(registry string, d v1.Hash, repo string, at time.Time) {
			if slices.Contains(registries, registry) {
				learned = append(learned, blobcache.Hint{Registry: registry, Digest: d.String(), Repo: repo, At: at})
			}
		})
		if err := blobcache.Save(path, learned, time.Now()); err != nil {
			fmt.Fprintf(errOut, "warning: the blob cache was not updated: %v\n", err)
		}
	}
}

func runSync(cmd *cobra.Command, srcRepo, dstRepo string, f syncFlags) error {
	var platforms []v1.Platform
	for _, p := range f.platforms {
		pl, err := v1.ParsePlatform(p)
		if err != nil || pl.OS == "" || pl.Architecture == "" {
			return usage(fmt.Errorf("--platform %q: want os/arch or os/arch/variant, e.g. linux/arm64", p))
		}
		platforms = append(platforms, *pl)
	}
	if f.newestBy != "version" && f.newestBy != "created" {
		return usage(fmt.Errorf("--newest-by %q: want version or created", f.newestBy))
	}
	spec := tagselect.Spec{Tags: f.tags, Pattern: f.tagPattern, Semver: f.semver, Exclude: f.exclude, Newest: f.newest, ByCreated: f.newestBy == "created"}
	if f.allTags {
		spec.Pattern = ".*"
	}
	if len(spec.Tags) == 0 && spec.Pattern == "" && spec.Semver == "" {
		return usage(errors.New("select tags with --tags, --tag-pattern, --semver or --all-tags"))
	}
	sel, err := tagselect.New(spec)
	if err != nil {
		return usage(flagError(err))
	}
	srcArg, dstArg := srcRepo, dstRepo
	srcRepo, dstRepo, wroteDir, closeOCI, err := resolveOCI(srcRepo, dstRepo, f.prefix, cmd.OutOrStdout())
	defer closeOCI()
	if err != nil {
		return usage(err)
	}
	if srcRepo != srcArg || dstRepo != dstArg {
		f.noBlobCache = true // a directory's loopback port changes from run to run
	}
	src, err := endpoint(srcRepo, f.srcCA, f.insecure, "--src-ca")
	if err != nil {
		return usage(err)
	}
	dst, err := endpoint(dstRepo, f.dstCA, f.insecure, "--dst-ca")
	if err != nil {
		return usage(err)
	}
	var under *imagecopy.Under
	switch {
	case f.prefix:
		under = &imagecopy.Under{Source: src, Target: dst}
		if f.repositoryPattern != "" {
			if under.Pattern, err = regexp.Compile(`^(?:` + f.repositoryPattern + `)$`); err != nil {
				return usage(fmt.Errorf("--repository-pattern %q: not a valid RE2 regular expression: %w", f.repositoryPattern, err))
			}
		}
	case f.repositoryPattern != "":
		return usage(errors.New("--repository-pattern goes with --prefix"))
	}

	out := cmd.OutOrStdout()
	bars := f.output == "text" && (f.progress == "bars" || (f.progress == "auto" && isTerminal(out)))
	var prog *progress
	if bars {
		prog = newProgress(out)
	}
	cache := imagecopy.NewCache(0)
	save := useBlobCache(f, []string{dst.Registry()}, cache, cmd.ErrOrStderr())
	opts := imagecopy.Options{Jobs: f.jobs, DryRun: f.dryRun, Platforms: platforms, Referrers: f.referrers, Bounds: f.bounds, Cache: cache, Verify: f.keys}
	if prog != nil {
		opts.Progress = prog.update
	}
	if under != nil {
		defer save()
		if prog != nil {
			defer prog.wait()
		}
		// A directory gets its checksums for what it holds, whatever failed.
		err := runSyncUnder(cmd.Context(), out, under, sel, opts, f)
		return errors.Join(err, wroteDir())
	}
	eng, err := imagecopy.New(src, dst, opts)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	start := time.Now()
	tags, left, err := eng.TagsCounted(ctx, sel)
	if err == nil && len(tags) == 0 {
		err = fmt.Errorf("no tag of %s matches the selection", srcRepo)
	}
	if said := left.String(f.newest); said != "" && f.output == "text" {
		fmt.Fprintf(out, "left out: %s\n", said)
	}
	var results []imagecopy.Result
	if err == nil {
		results = eng.Sync(ctx, tags)
		save()
	}
	if prog != nil {
		prog.wait()
	}
	srcReq, dstReq := eng.Requests()
	if f.output == "json" {
		if werr := writeReport(out, []repoReport{newRepoReport("", srcRepo, dstRepo, err, results, f.dryRun)}, results, time.Since(start), f.dryRun, srcReq, dstReq); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if f.output == "text" {
		printResults(out, "", results, f.dryRun)
		printSummary(out, "", results, time.Since(start), f.dryRun, srcReq, dstReq)
	}
	if failed := failedTags("", results); len(failed) > 0 {
		return errors.Join(fmt.Errorf("%d tag(s) failed: %s", len(failed), strings.Join(failed, ", ")), wroteDir())
	}
	return wroteDir()
}

// failedTags returns the references (prefix + tag) of the tags that failed.
func failedTags(prefix string, results []imagecopy.Result) []string {
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, prefix+r.Tag)
		}
	}
	return failed
}

// printResults writes a line per tag (its reference is prefix + tag).
func printResults(out io.Writer, prefix string, results []imagecopy.Result, dryRun bool) {
	for _, r := range results {
		ref := prefix + r.Tag
		switch resultOf(r, dryRun) {
		case resultFailed:
			fmt.Fprintf(out, "failed     %s: %v\n", ref, r.Err)
		case resultUpToDate:
			fmt.Fprintf(out, "up to date %s %s\n", ref, r.SourceDigest)
		case resultWouldCopy:
			fmt.Fprintf(out, "would copy %s %s\n", ref, r.SourceDigest)
		default:
			fmt.Fprintf(out, "copied     %s %s (%s)\n", ref, r.TargetDigest, bytesString(r.Bytes))
		}
	}
}

// printSummary writes what a run did and the requests it took (counts of every Engine,
// both sides); what prefixes the first line (e.g. "3 repositories, ").
func printSummary(out io.Writer, what string, results []imagecopy.Result, took time.Duration, dryRun bool, requests ...*registryhttp.Requests) {
	s := imagecopy.Summarize(results, took)
	copied := "copied"
	if dryRun {
		copied = "to copy"
	}
	fmt.Fprintf(out, "%s%d tag(s): %d %s, %d up to date, %d failed; %s in %s\n",
		what, len(results), s.Copied, copied, s.UpToDate, s.Failed, bytesString(s.Bytes), s.Duration.Round(time.Millisecond))
	var all, heads int64
	for _, r := range requests {
		all += r.All.Load()
		heads += r.ManifestHeads.Load()
	}
	fmt.Fprintf(out, "%d requests: %d manifest checks for %d tag(s) and %d referrer(s), %d other\n",
		all, heads, len(results), s.Referrers, all-heads)
}

func flagError(err error) error {
	var fe *tagselect.FieldError
	if errors.As(err, &fe) {
		flag := map[string]string{"tagPattern": "--tag-pattern", "semver": "--semver", "exclude": "--exclude", "newest": "--newest"}[fe.Field]
		return fmt.Errorf("%s %q: %w", flag, fe.Value, fe.Err)
	}
	return err
}

// endpoint resolves a repository's credentials from the docker config, and its CA file.
func endpoint(repo, caFile string, insecure bool, caFlag string) (imagecopy.Endpoint, error) {
	return endpointWith(authn.DefaultKeychain, repo, caFile, insecure, caFlag)
}

// onceKeychain resolves each registry once (a file of many repositories on one registry
// reads the docker config once).
type onceKeychain struct {
	mu   sync.Mutex
	seen map[string]authn.Authenticator
}

func (k *onceKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if a, ok := k.seen[r.RegistryStr()]; ok {
		return a, nil
	}
	a, err := authn.DefaultKeychain.Resolve(r)
	if err != nil {
		return nil, err
	}
	if k.seen == nil {
		k.seen = map[string]authn.Authenticator{}
	}
	k.seen[r.RegistryStr()] = a
	return a, nil
}

func endpointWith(keychain authn.Keychain, repo, caFile string, insecure bool, caFlag string) (imagecopy.Endpoint, error) {
	e := imagecopy.Endpoint{Repository: repo}
	if err := withCredentials(keychain, &e, insecure); err != nil {
		return imagecopy.Endpoint{}, err
	}
	if caFile != "" {
		var err error
		if e.CA, err = os.ReadFile(caFile); err != nil {
			return imagecopy.Endpoint{}, fmt.Errorf("%s: %w", caFlag, err)
		}
	}
	return e, nil
}

// withCredentials checks e's repository and gives it the docker config's credentials for
// its registry; insecure (--insecure) also allows plain HTTP and skips TLS verification.
func withCredentials(keychain authn.Keychain, e *imagecopy.Endpoint, insecure bool) error {
	e.Insecure = e.Insecure || insecure
	var opts []name.Option
	if e.Insecure {
		opts = append(opts, name.Insecure)
	}
	var reg name.Registry
	if r, err := name.NewRepository(e.Repository, opts...); err == nil {
		reg = r.Registry
	} else if host, err2 := name.NewRegistry(e.Repository, opts...); !strings.Contains(e.Repository, "/") && err2 == nil {
		reg = host // a registry alone: the prefix of every repository (--prefix)
	} else {
		return fmt.Errorf("%q is not a repository (write it without tag, e.g. docker.io/library/busybox): %w", e.Repository, err)
	}
	var err error
	if e.Auth, err = keychain.Resolve(reg); err != nil {
		return fmt.Errorf("reading credentials for %s from the docker config: %w", reg.RegistryStr(), err)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func bytesString(n int64) string {
	return resource.NewQuantity(n, resource.BinarySI).String() + "B"
}

// progress draws one bar per tag being copied.
type progress struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
}

func newProgress(w io.Writer) *progress {
	return &progress{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh()), bars: map[string]*mpb.Bar{}}
}

func (p *progress) update(tag string, complete, total int64) {
	p.mu.Lock()
	b, ok := p.bars[tag]
	if !ok {
		b = p.p.AddBar(total,
			mpb.PrependDecorators(decor.Name(tag, decor.WC{W: 12, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")),
		)
		p.bars[tag] = b
	}
	p.mu.Unlock()
	b.SetTotal(total, complete >= total)
	b.SetCurrent(complete)
}

func (p *progress) wait() {
	p.mu.Lock()
	for _, b := range p.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	p.mu.Unlock()
	p.p.Wait()
}
