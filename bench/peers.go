package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// mode is how a peer is called over a set of repositories.
type mode int

const (
	// perRepo: one process per repository, one after another, as a CI script or a
	// pipeline step calls a copier.
	perRepo mode = iota
	// batch: one process for every repository, from a file.
	batch
	// prefix: one process for every repository below a prefix, found in the source's
	// catalog (regsync's type: registry, regwire's --prefix).
	prefix
)

var modes = []mode{perRepo, batch, prefix}

func (m mode) String() string {
	switch m {
	case perRepo:
		return "one process per repository"
	case batch:
		return "one process for every repository"
	}
	return "one process for every repository below a prefix, from the source's catalog"
}

// short names the mode in a table cell.
func (m mode) short() string {
	return [...]string{"per repository", "batch", "prefix"}[m]
}

// prefixOf is the path the repositories of a set share (bench, shared).
func prefixOf(repos []Repo) string { return path.Dir(repos[0].Name) }

// peer is one copying tool, run as its users run it over a set of repositories.
type peer struct {
	name    string
	version string
	mode    mode
	// regwire marks regwire's own entry in its mode.
	regwire bool
	// startArgv is the cheapest command of the tool (its version): its wall time is the
	// process start-up every invocation pays.
	startArgv []string
	// argv returns the commands that copy repos from src to dst (registry host:port),
	// writing any configuration files into dir.
	argv func(dir, src, dst string, repos []Repo, jobs int) ([][]string, error)
	// target names where a source repository lands in dst.
	target func(repo string) string
}

// run is one timed invocation of a peer.
type run struct {
	wall   time.Duration // of its processes, one after another
	maxRSS int64         // bytes, the largest of its processes
	cpu    time.Duration // user + system of its processes
	// regCPU is the CPU time the two registries spent meanwhile.
	regCPU time.Duration
}

// cacheDir is what XDG_CACHE_HOME names for every peer: regwire keeps its blob cache
// there. It lasts the whole bench, as a CI runner's cache lasts between jobs, and as
// skopeo's own blob-info cache does (as root, /var/lib/containers/cache: containers/image
// has no setting for it in skopeo): both only ever name candidates to mount from, which
// the registry checks.
var cacheDir = filepath.Join(os.TempDir(), "regwire-bench-cache")

func (p *peer) run(ctx context.Context, dir, src, dst string, repos []Repo, jobs int) (run, error) {
	cmds, err := p.argv(dir, src, dst, repos, jobs)
	if err != nil {
		return run{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return run{}, err
	}
	var r run
	resFile := filepath.Join(dir, "launch.out")
	for _, argv := range cmds {
		cmd := exec.CommandContext(ctx, self, append([]string{launchArg, resFile}, argv...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir, "HOME="+dir, "XDG_CACHE_HOME="+cacheDir)
		if err := cmd.Run(); err != nil {
			return r, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out.String(), 2000))
		}
		b, err := os.ReadFile(resFile)
		if err != nil {
			return r, err
		}
		var wall, rss, cpu int64
		if _, err := fmt.Sscan(string(b), &wall, &rss, &cpu); err != nil {
			return r, fmt.Errorf("launcher result %q: %w", b, err)
		}
		r.wall += time.Duration(wall)
		r.cpu += time.Duration(cpu)
		r.maxRSS = max(r.maxRSS, rss)
	}
	return r, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func toolVersion(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func peers(bin string) []*peer {
	same := func(repo string) string { return repo }
	crane := filepath.Join(bin, "crane")
	regsync := filepath.Join(bin, "regsync")
	regwire := filepath.Join(bin, "regwire")
	craneVersion, skopeoVersion, regwireVersion := toolVersion(crane, "version"), toolVersion("skopeo", "--version"), toolVersion(regwire, "version")
	return []*peer{
		{
			name: "crane copy", version: craneVersion, mode: perRepo, target: same, startArgv: []string{crane, "version"},
			// crane copies one repository per invocation: --all-tags, -j jobs.
			argv: func(_, src, dst string, repos []Repo, jobs int) ([][]string, error) {
				var cmds [][]string
				for _, r := range repos {
					cmds = append(cmds, []string{crane, "copy", "--all-tags", "-j", fmt.Sprint(jobs), src + "/" + r.Name, dst + "/" + r.Name})
				}
				return cmds, nil
			},
		},
		{
			name: "skopeo sync", version: skopeoVersion, mode: perRepo, target: same, startArgv: []string{"skopeo", "--version"},
			// skopeo sync --src docker copies every tag of one repository into the
			// destination namespace, keeping the repository's last path element.
			argv: func(_, src, dst string, repos []Repo, _ int) ([][]string, error) {
				var cmds [][]string
				for _, r := range repos {
					cmds = append(cmds, []string{"skopeo", "sync", "--src", "docker", "--dest", "docker", "--all", "--preserve-digests",
						"--retry-times", "0", src + "/" + r.Name, dst + "/" + path.Dir(r.Name)})
				}
				return cmds, nil
			},
		},
		{
			name: "regwire sync", version: regwireVersion, mode: perRepo, regwire: true, target: same, startArgv: []string{regwire, "version"},
			// regwire sync: one repository per invocation, every tag, its blob cache on.
			argv: func(_, src, dst string, repos []Repo, jobs int) ([][]string, error) {
				var cmds [][]string
				for _, r := range repos {
					cmds = append(cmds, []string{regwire, "sync", src + "/" + r.Name, dst + "/" + r.Name, "--all-tags", "--progress", "lines", "--jobs", fmt.Sprint(jobs)})
				}
				return cmds, nil
			},
		},
		{
			name: "skopeo sync --src yaml", version: skopeoVersion, mode: batch, startArgv: []string{"skopeo", "--version"},
			target: path.Base, // skopeo sync keeps the last path element under the destination
			// skopeo sync reads every repository and tag from one YAML file; it copies one
			// image at a time (it has no parallelism flag).
			argv: func(dir, src, dst string, repos []Repo, _ int) ([][]string, error) {
				var b strings.Builder
				fmt.Fprintf(&b, "%s:\n  images:\n", src)
				for _, r := range repos {
					fmt.Fprintf(&b, "    %s: [%s]\n", r.Name, quoteAll(r.Tags))
				}
				file := filepath.Join(dir, "skopeo.yaml")
				if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
					return nil, err
				}
				return [][]string{{"skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all", "--preserve-digests",
					"--retry-times", "0", file, dst}}, nil
			},
		},
		{
			name: "regsync once", version: toolVersion(regsync, "version", "--format", "{{.VCSTag}}"), mode: batch, target: same,
			startArgv: []string{regsync, "version"},
			// regsync once: one config with every repository, parallel = jobs.
			argv: func(dir, src, dst string, repos []Repo, jobs int) ([][]string, error) {
				var b strings.Builder
				fmt.Fprintf(&b, "version: 1\ncreds:\n  - registry: %s\n    tls: enabled\n  - registry: %s\n    tls: enabled\ndefaults:\n  parallel: %d\nsync:\n", src, dst, jobs)
				for _, r := range repos {
					fmt.Fprintf(&b, "  - source: %s/%s\n    target: %s/%s\n    type: repository\n", src, r.Name, dst, r.Name)
				}
				file := filepath.Join(dir, "regsync.yaml")
				if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
					return nil, err
				}
				return [][]string{{regsync, "once", "-c", file, "-v", "error"}}, nil
			},
		},
		{
			name: "regsync once (type: registry)", version: toolVersion(regsync, "version", "--format", "{{.VCSTag}}"), mode: prefix, target: same,
			startArgv: []string{regsync, "version"},
			// regsync's whole-registry sync: the source's catalog, repositories allowed by a
			// regular expression of the prefix, parallel = jobs.
			argv: func(dir, src, dst string, repos []Repo, jobs int) ([][]string, error) {
				conf := fmt.Sprintf("version: 1\ncreds:\n  - registry: %s\n    tls: enabled\n  - registry: %s\n    tls: enabled\ndefaults:\n  parallel: %d\nsync:\n"+
					"  - source: %s\n    target: %s\n    type: registry\n    repos:\n      allow: [\"%s/.*\"]\n", src, dst, jobs, src, dst, prefixOf(repos))
				file := filepath.Join(dir, "regsync-registry.yaml")
				if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
					return nil, err
				}
				return [][]string{{regsync, "once", "-c", file, "-v", "error"}}, nil
			},
		},
		{
			name: "regwire sync --prefix", version: regwireVersion, mode: prefix, regwire: true, target: same, startArgv: []string{regwire, "version"},
			// regwire sync --prefix: the source's catalog below the prefix, every tag, one
			// --jobs budget, the blob cache off as for -f.
			argv: func(_, src, dst string, repos []Repo, jobs int) ([][]string, error) {
				pre := prefixOf(repos)
				return [][]string{{regwire, "sync", "--prefix", src + "/" + pre, dst + "/" + pre, "--all-tags", "--progress", "lines",
					"--jobs", fmt.Sprint(jobs), "--no-blob-cache"}}, nil
			},
		},
		{
			name: "regwire sync -f", version: regwireVersion, mode: batch, regwire: true, target: same, startArgv: []string{regwire, "version"},
			// regwire sync -f: the repositories as ImageSync manifests, one --jobs budget.
			argv: func(dir, src, dst string, repos []Repo, jobs int) ([][]string, error) {
				var b strings.Builder
				for _, r := range repos {
					fmt.Fprintf(&b, "---\napiVersion: regwire.dev/v1alpha1\nkind: ImageSync\nmetadata: {name: %s}\nspec:\n  source: {image: %s/%s, tags: [%s]}\n  target: {image: %s/%s}\n",
						strings.ReplaceAll(r.Name, "/", "-"), src, r.Name, quoteAll(r.Tags), dst, r.Name)
				}
				file := filepath.Join(dir, "regwire.yaml")
				if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
					return nil, err
				}
				// One process: every blob it could mount it learns in the same run; the
				// blob cache, for later processes, stays off so that the batch numbers
				// compare with earlier runs.
				return [][]string{{regwire, "sync", "-f", file, "--progress", "lines", "--jobs", fmt.Sprint(jobs), "--no-blob-cache"}}, nil
			},
		},
	}
}

func quoteAll(tags []string) string {
	q := make([]string, len(tags))
	for i, t := range tags {
		q[i] = `"` + t + `"`
	}
	return strings.Join(q, ", ")
}
