package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/tagselect"
)

// fileSync is one ImageSync of a file, ready to run.
type fileSync struct {
	name     string // namespace/name, or the document's position
	src, dst imagecopy.Endpoint
	sel      *tagselect.Selector
	opts     imagecopy.Options
}

// readSyncFile reads ImageSync manifests (YAML or JSON, several documents) and checks that
// regwire sync can run each of them without a cluster: source and target repositories,
// CA bundles and the insecure flags, credentials from the docker config.
func readSyncFile(path string, insecure bool) ([]fileSync, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(r))
	keychain := &onceKeychain{}
	var out []fileSync
	for doc := 1; ; doc++ {
		raw, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || isComment(raw) {
			continue
		}
		is := &v1alpha1.ImageSync{}
		if err := yaml.UnmarshalStrict(raw, is); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		name := fmt.Sprintf("document %d", doc)
		if is.Name != "" {
			name = strings.TrimPrefix(is.Namespace+"/"+is.Name, "/")
		}
		fs, err := syncFromSpec(keychain, name, &is.Spec, insecure)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		if is.Kind != "ImageSync" {
			return nil, fmt.Errorf("%s: %s: kind %q: want ImageSync", path, name, is.Kind)
		}
		out = append(out, fs)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no ImageSync in the file", path)
	}
	return out, nil
}

// isComment says whether a YAML document holds nothing but comments.
func isComment(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if l := bytes.TrimSpace(line); len(l) > 0 && l[0] != '#' {
			return false
		}
	}
	return true
}

// syncFromSpec turns an ImageSync's spec into what the engine needs (imagecopy.PlanFor, as
// the controller does), refusing what only the controller can do (Secrets,
// RegistryMirrors) with the field to change. Credentials come from the docker config.
func syncFromSpec(keychain authn.Keychain, name string, spec *v1alpha1.ImageSyncSpec, insecure bool) (fileSync, error) {
	fs := fileSync{name: name}
	switch {
	case spec.Source.Image == "":
		return fs, errors.New("spec.source.image is empty")
	case spec.Target.Image == "":
		return fs, errors.New("spec.target.image is empty: regwire sync -f needs the target repository itself (spec.target.registryMirrorRef is resolved by the controller only)")
	case spec.Verify != nil:
		return fs, errors.New("spec.verify: regwire sync -f reads no Secret or ConfigMap; remove the field and give the keys with --verify-key FILE")
	case spec.Source.Repositories == v1alpha1.RepositoryScopePrefix:
		return fs, fmt.Errorf("spec.source.repositories: Prefix: regwire sync -f runs one repository per ImageSync; copy a prefix with regwire sync --prefix %s %s", spec.Source.Image, spec.Target.Image)
	case spec.Source.CredentialsSecretRef != nil || spec.Target.CredentialsSecretRef != nil:
		return fs, errors.New("credentialsSecretRef: regwire sync -f takes credentials from the docker config; remove the field")
	}
	plan, err := imagecopy.PlanFor(spec, nil)
	if err != nil {
		return fs, err
	}
	fs.sel, fs.opts = plan.Selector, plan.Options
	fs.src, fs.dst = plan.Source, plan.Target
	if err := withCredentials(keychain, &fs.src, insecure); err != nil {
		return fs, fmt.Errorf("spec.source.image: %w", err)
	}
	if err := withCredentials(keychain, &fs.dst, insecure); err != nil {
		return fs, fmt.Errorf("spec.target.image: %w", err)
	}
	return fs, nil
}

// runSyncFile runs every ImageSync of a file at once: one limit of jobs for all of them, one
// cache (a blob shared by several repositories crosses the wire once and is mounted into
// the others); then a line per tag, in the file's order, and a summary.
func runSyncFile(ctx context.Context, out io.Writer, syncs []fileSync, f syncFlags) error {
	cache, slots := imagecopy.NewCache(0), imagecopy.NewSlots(f.jobs)
	var registries []string
	for _, s := range syncs {
		if r := s.dst.Registry(); !slices.Contains(registries, r) {
			registries = append(registries, r)
		}
	}
	save := useBlobCache(f, registries, cache, os.Stderr)
	var prog *progress
	if f.output == "text" && (f.progress == "bars" || (f.progress == "auto" && isTerminal(out))) {
		prog = newProgress(out)
	}
	start := time.Now()
	results := make([][]imagecopy.Result, len(syncs))
	engines := make([]*imagecopy.Engine, len(syncs))
	errs := make([]error, len(syncs))
	var wg sync.WaitGroup
	for i, s := range syncs {
		wg.Go(func() {
			opts := s.opts
			opts.Jobs, opts.Slots, opts.Cache, opts.DryRun = f.jobs, slots, cache, f.dryRun
			opts.Bounds, opts.Verify = f.bounds, f.keys
			if prog != nil {
				opts.Progress = func(tag string, c, t int64) { prog.update(s.src.Repository+":"+tag, c, t) }
			}
			eng, err := imagecopy.New(s.src, s.dst, opts)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
				return
			}
			engines[i] = eng
			tags, err := eng.Tags(ctx, s.sel)
			if err == nil && len(tags) == 0 {
				err = fmt.Errorf("no tag of %s matches the selection", s.src.Repository)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
				return
			}
			results[i] = eng.Sync(ctx, tags)
		})
	}
	wg.Wait()
	save()
	if prog != nil {
		prog.wait()
	}
	var all []imagecopy.Result
	var failed []string
	var requests []*registryhttp.Requests
	repos := make([]repoReport, 0, len(syncs))
	for i, s := range syncs {
		if f.output == "json" {
			repos = append(repos, newRepoReport(s.name, s.src.Repository, s.dst.Repository, errs[i], results[i], f.dryRun))
		} else {
			printResults(out, s.dst.Repository+":", results[i], f.dryRun)
		}
		failed = append(failed, failedTags(s.dst.Repository+":", results[i])...)
		all = append(all, results[i]...)
		if engines[i] != nil {
			src, dst := engines[i].Requests()
			requests = append(requests, src, dst)
		}
	}
	if f.output == "json" {
		if err := writeReport(out, repos, all, time.Since(start), f.dryRun, requests...); err != nil {
			return err
		}
	} else {
		printSummary(out, fmt.Sprintf("%d repositories, ", len(syncs)), all, time.Since(start), f.dryRun, requests...)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d tag(s) failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}
