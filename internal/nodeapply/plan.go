// Package nodeapply is the node pipeline that the node agent and `regwire node apply`
// share: it decides which runtimes each mirror is written for and renders their files
// (Node.Plan), writes them into the runtimes' roots with ownership, reloads the runtimes
// whose files changed and keeps regwire's block of the hosts file (Node.Apply), and
// probes the mirrors' endpoints from the node (ProbeEndpoints). Mirrors the node refuses
// to render keep their last good files and hosts entries.
package nodeapply

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/runtimeconfig"
)

// Node is what the pipeline writes on one node.
type Node struct {
	// Roots holds each runtime's registry configuration root; a runtime without one is
	// reported for the mirrors that need it.
	Roots map[v1alpha1.ContainerRuntime]*nodefiles.Files
	// HostsFile is the hosts file to keep regwire's block in; "" leaves it alone.
	HostsFile string
	// Reload is called after a runtime's files changed (ReloadCRIO); nil does nothing.
	Reload func(ctx context.Context, rt v1alpha1.ContainerRuntime) error
	// CRIORoot is CRI-O's /etc/containers as the pipeline reaches it, whose other
	// drop-ins it reads to tell when one of them wins over regwire's; "" skips that.
	CRIORoot string
	// ContainerdConfig is the node's containerd configuration file as the pipeline reads
	// it ("" skips the config_path check); ContainerdConfigOnHost and
	// ContainerdRootOnHost are that file and the containerd root as the node names them,
	// for messages and the check.
	ContainerdConfig, ContainerdConfigOnHost, ContainerdRootOnHost string
}

// Plan is what one pass applies: each runtime's configuration, the hosts entries, and
// what stands in the way of each mirror.
type Plan struct {
	// Runtime is the node's own runtime.
	Runtime runtimeconfig.Runtime
	// hosts renders every mirror once: the hosts entries and the checks every runtime
	// shares.
	hosts *nodeconfig.Config
	// configs holds one configuration per runtime root the node has, empty for runtimes
	// no mirror wants (which releases their files).
	configs map[v1alpha1.ContainerRuntime]*nodeconfig.Config
	// runtimes lists the runtimes each mirror is written for.
	runtimes map[string][]v1alpha1.ContainerRuntime
	// missing maps mirrors to runtimes they want that the node has no root for.
	missing map[string][]v1alpha1.ContainerRuntime
	// configPath is why the node's containerd ignores the root ("" when it reads it).
	configPath string
	// shadowed maps mirrors to why CRI-O takes their registries from another drop-in.
	shadowed map[string]string
	// fallsBack says which mirrors give a pull somewhere else to go.
	fallsBack map[string]bool
}

// Plan decides which runtimes each mirror is written for — its spec.runtimes, or else the
// node's own runtime (containerd when the node does not say) — and renders them.
func (n *Node) Plan(runtime runtimeconfig.Runtime, mirrors []nodeconfig.Mirror) *Plan {
	p := &Plan{
		Runtime:   runtime,
		hosts:     nodeconfig.Render(mirrors),
		configs:   map[v1alpha1.ContainerRuntime]*nodeconfig.Config{},
		runtimes:  map[string][]v1alpha1.ContainerRuntime{},
		missing:   map[string][]v1alpha1.ContainerRuntime{},
		fallsBack: map[string]bool{},
	}
	want := map[v1alpha1.ContainerRuntime][]nodeconfig.Mirror{}
	for _, m := range mirrors {
		p.fallsBack[m.Name] = nodeconfig.FallsBack(m.Spec)
		rts := slices.Clone(m.Spec.Runtimes)
		if len(rts) == 0 {
			rts = []v1alpha1.ContainerRuntime{cmp.Or(runtime.Name, v1alpha1.RuntimeContainerd)}
		}
		slices.Sort(rts)
		for _, rt := range slices.Compact(rts) {
			if n.Roots[rt] == nil {
				p.missing[m.Name] = append(p.missing[m.Name], rt)
				continue
			}
			want[rt] = append(want[rt], m)
			p.runtimes[m.Name] = append(p.runtimes[m.Name], rt)
		}
	}
	for rt := range n.Roots {
		p.configs[rt] = nodeconfig.RenderFor(rt, want[rt])
	}
	if len(want[v1alpha1.RuntimeContainerd]) > 0 && n.ContainerdConfig != "" {
		p.configPath = n.checkConfigPath(runtime.Major)
	}
	if cfg := p.configs[v1alpha1.RuntimeCRIO]; cfg != nil && n.CRIORoot != "" {
		p.shadowed = checkDropIns(n.CRIORoot, cfg)
	}
	return p
}

// Runtimes are the runtimes the mirror is written for.
func (p *Plan) Runtimes(mirror string) []v1alpha1.ContainerRuntime { return p.runtimes[mirror] }

// checkDropIns reads the other drop-ins of CRI-O's registries.conf.d (read-only) and says,
// per mirror, which one configures the same registry after regwire's and so wins.
func checkDropIns(root string, cfg *nodeconfig.Config) map[string]string {
	dir := filepath.Join(root, nodeconfig.DropInDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	others := map[string][]byte{}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".conf") {
			if data, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				others[e.Name()] = data
			}
		}
	}
	prefixes := map[string][]string{}
	for host, mirror := range cfg.Owners {
		prefixes[mirror] = append(prefixes[mirror], host)
	}
	out := map[string]string{}
	for mirror, hosts := range prefixes {
		ours := nodeconfig.DropInName(mirror)
		rest := maps.Clone(others)
		delete(rest, ours)
		if msg := runtimeconfig.DropInShadows(ours, hosts, rest); msg != "" {
			out[mirror] = "crio: " + msg
		}
	}
	return out
}

// checkConfigPath reads the node's containerd configuration (read-only) and says whether
// containerd reads the root the pipeline writes.
func (n *Node) checkConfigPath(major int) string {
	data, err := os.ReadFile(n.ContainerdConfig)
	switch {
	case os.IsNotExist(err):
		data = nil
	case err != nil:
		return "" // unreadable: nothing to say for sure; the probe still runs
	}
	return runtimeconfig.ConfigPathProblem(n.ContainerdConfigOnHost, data, major, n.ContainerdRootOnHost)
}

// Problem is what keeps one mirror from being used on the node.
type Problem struct {
	// Reason classifies the first problem found.
	Reason v1alpha1.ConditionReason
	// Message says every problem found, separated by "; ".
	Message string
}

// Problems collects, per mirror, what keeps it from being used on this node: unsafe input,
// host conflicts, what a runtime cannot express, a runtime the node has no root for, a
// CRI-O drop-in that wins over regwire's, and a containerd that ignores the root.
func (p *Plan) Problems() map[string]Problem {
	out := map[string]Problem{}
	seen := map[string]bool{}
	add := func(mirror, msg string, reason v1alpha1.ConditionReason) {
		if seen[mirror+"\x00"+msg] {
			return
		}
		seen[mirror+"\x00"+msg] = true
		pr := out[mirror]
		if pr.Message == "" {
			pr = Problem{Reason: reason, Message: msg}
		} else {
			pr.Message += "; " + msg
		}
		out[mirror] = pr
	}
	for _, e := range p.hosts.Errors {
		add(e.Mirror, e.Field+": "+e.Err.Error(), v1alpha1.ReasonApplyFailed)
	}
	for _, rt := range slices.Sorted(maps.Keys(p.configs)) {
		cfg := p.configs[rt]
		for _, e := range cfg.Errors {
			if e.Reason == v1alpha1.ReasonRuntimeUnsupported {
				add(e.Mirror, fmt.Sprintf("%s: %s: %v", rt, e.Field, e.Err), e.Reason)
			}
		}
		for _, c := range cfg.Conflicts {
			add(c.Mirror, c.String(), v1alpha1.ReasonHostConflict)
		}
	}
	for mirror, rts := range p.missing {
		for _, rt := range rts {
			add(mirror, fmt.Sprintf("the agent writes no %s configuration: add %s to the manager's --agent-runtimes", rt, rt), v1alpha1.ReasonRuntimeUnsupported)
		}
	}
	for mirror, msg := range p.shadowed {
		if _, ok := out[mirror]; !ok {
			add(mirror, msg, v1alpha1.ReasonForeignConfigWins)
		}
	}
	if p.configPath != "" {
		for mirror, rts := range p.runtimes {
			if _, ok := out[mirror]; !ok && slices.Contains(rts, v1alpha1.RuntimeContainerd) {
				add(mirror, p.configPath, v1alpha1.ReasonConfigPathNotSet)
			}
		}
	}
	return out
}

// Notes say, per mirror, what of it the runtimes it is written for leave out on this node
// and what they do instead, each prefixed with the runtime: what a format cannot express
// (nodeconfig's notes), and a containerd before 2.1, which takes no dial_timeout.
func (p *Plan) Notes() map[string][]string {
	out := map[string][]string{}
	for _, rt := range slices.Sorted(maps.Keys(p.configs)) {
		for _, n := range p.configs[rt].Notes {
			out[n.Mirror] = append(out[n.Mirror], fmt.Sprintf("%s: %s: %s", rt, n.Field, n.Text))
		}
	}
	r := p.Runtime
	if r.Name == v1alpha1.RuntimeContainerd && r.Major > 0 && !r.AtLeast(2, 1) {
		for mirror, rts := range p.runtimes {
			if slices.Contains(rts, v1alpha1.RuntimeContainerd) && p.fallsBack[mirror] {
				out[mirror] = append(out[mirror], fmt.Sprintf(
					"containerd: spec.dialTimeout: containerd %s takes no dial_timeout (2.1 and later do): an endpoint that does not answer holds a pull for containerd's own 30 s connect timeout before the next one or the upstream", r.Version))
			}
		}
	}
	return out
}

// MirrorHash digests what the node holds for one mirror in every runtime.
func (p *Plan) MirrorHash(mirror string) string {
	var parts []string
	for _, rt := range slices.Sorted(maps.Keys(p.configs)) {
		if h := p.configs[rt].MirrorHash(mirror); h != "" {
			parts = append(parts, string(rt)+"="+h)
		}
	}
	if len(parts) == 0 {
		return p.hosts.MirrorHash(mirror) // hosts entries only, or nothing
	}
	return joinHashes(parts)
}

// Hash digests everything the node applied.
func (p *Plan) Hash() string {
	parts := []string{"hosts=" + p.hosts.Hash()}
	for _, rt := range slices.Sorted(maps.Keys(p.configs)) {
		parts = append(parts, string(rt)+"="+p.configs[rt].Hash())
	}
	return joinHashes(parts)
}

func joinHashes(parts []string) string {
	if len(parts) == 1 {
		_, h, _ := strings.Cut(parts[0], "=")
		return h
	}
	sum := sha256.New()
	for _, part := range parts {
		sum.Write([]byte(part + "\n"))
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil))
}
