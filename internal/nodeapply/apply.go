package nodeapply

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-logr/logr"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/hostsfile"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/nodefiles"
)

// Change is one file the pipeline changed.
type Change struct {
	// Runtime whose root holds the file; "" for the hosts file.
	Runtime v1alpha1.ContainerRuntime
	nodefiles.Change
}

// Result is what one Apply changed.
type Result struct {
	// Changes are the files changed under the runtimes' roots, runtime by runtime.
	Changes []Change
	// HostsChanged says whether regwire's block of the hosts file changed; HostsEntries
	// is how many entries it now holds.
	HostsChanged bool
	HostsEntries int
}

// Failure is one step of Apply that failed; it concerns every mirror of the node.
type Failure struct {
	// Runtime whose root or reload failed; "" for the hosts file.
	Runtime v1alpha1.ContainerRuntime
	// Step is "write", "reload" or "hosts".
	Step string
	Err  error
}

func (f Failure) Error() string {
	if f.Runtime == "" {
		return f.Err.Error()
	}
	return fmt.Sprintf("%s: %v", f.Runtime, f.Err)
}

func (f Failure) Unwrap() error { return f.Err }

// ApplyError lists the steps of one Apply that failed; the others were done.
type ApplyError struct {
	Failures []Failure
}

func (e *ApplyError) Error() string {
	msgs := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		msgs[i] = f.Error()
	}
	return strings.Join(msgs, "; ")
}

// Apply writes each runtime's rendered files and the hosts block, and reloads the
// runtimes whose files changed. Mirrors the plan refuses to render, and those named in
// keep (say, whose published configuration could not be read), keep their last good files
// and hosts entries. Every step is tried; a failing one is reported in an *ApplyError and
// tried again by the next Apply. Changes are logged to the context's logger.
func (n *Node) Apply(ctx context.Context, p *Plan, keep ...string) (Result, error) {
	log := logr.FromContextOrDiscard(ctx)
	var res Result
	var failures []Failure
	for _, rt := range slices.Sorted(maps.Keys(n.Roots)) {
		cfg := p.configs[rt]
		changes, err := n.Roots[rt].ApplyOwned(nodefiles.Desired{Files: cfg.Files, Owners: cfg.FileOwners(), Keep: keepSet(cfg, keep)})
		if err != nil {
			failures = append(failures, Failure{Runtime: rt, Step: "write", Err: err})
			log.Error(err, "Applying registry configuration failed", "runtime", rt)
		}
		for _, c := range changes {
			log.Info("Changed registry configuration", "runtime", rt, "path", c.Path, "action", c.Action)
			res.Changes = append(res.Changes, Change{Runtime: rt, Change: c})
		}
		if len(changes) > 0 && n.Reload != nil {
			if err := n.Reload(ctx, rt); err != nil {
				failures = append(failures, Failure{Runtime: rt, Step: "reload", Err: err})
				log.Error(err, "Reloading the runtime's registry configuration failed", "runtime", rt)
			}
		}
	}
	if n.HostsFile != "" {
		entries := make([]hostsfile.Entry, 0, len(p.hosts.HostsEntries))
		for _, e := range p.hosts.HostsEntries {
			entries = append(entries, hostsfile.Entry{IP: e.IP, Hostnames: e.Hostnames, Owner: e.Mirror})
		}
		changed, err := nodefiles.ApplyHostsFile(n.HostsFile, entries, slices.Sorted(maps.Keys(keepSet(p.hosts, keep)))...)
		switch {
		case err != nil:
			failures = append(failures, Failure{Step: "hosts", Err: err})
			log.Error(err, "Applying hosts file entries failed", "hostsFile", n.HostsFile)
		case changed:
			log.Info("Changed hosts file entries", "hostsFile", n.HostsFile, "entries", len(entries))
		}
		res.HostsChanged, res.HostsEntries = changed, len(entries)
	}
	if len(failures) > 0 {
		return res, &ApplyError{Failures: failures}
	}
	return res, nil
}

// keepSet names the mirrors whose files and entries stay as they are: those cfg refused
// to render, and keep.
func keepSet(cfg *nodeconfig.Config, keep []string) map[string]bool {
	out := map[string]bool{}
	for _, e := range cfg.Errors {
		out[e.Mirror] = true
	}
	for _, name := range keep {
		out[name] = true
	}
	return out
}
