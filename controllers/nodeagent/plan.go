package nodeagent

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/runtimeconfig"
)

// plan is what one reconcile applies: each runtime's configuration, the hosts entries,
// and what stands in the way of each mirror.
type plan struct {
	// node is the node's own runtime.
	node runtimeconfig.Runtime
	// hosts renders every selected mirror once: the hosts entries and the checks every
	// runtime shares.
	hosts *nodeconfig.Config
	// configs holds one configuration per runtime root the agent has, empty for runtimes
	// no mirror wants (which releases their files).
	configs map[v1alpha1.ContainerRuntime]*nodeconfig.Config
	// runtimes lists the runtimes each mirror is written for.
	runtimes map[string][]v1alpha1.ContainerRuntime
	// missing maps mirrors to runtimes they want that the agent has no root for.
	missing map[string][]v1alpha1.ContainerRuntime
	// configPath is why the node's containerd ignores the root ("" when it reads it).
	configPath string
	// shadowed maps mirrors to why CRI-O takes their registries from another drop-in.
	shadowed map[string]string
}

// plan decides which runtimes each selected mirror is written for: its spec.runtimes, or
// else the node's own runtime (containerd when the node does not say).
func (r *Reconciler) plan(node *corev1.Node, selected []nodeconfig.Mirror) *plan {
	p := &plan{
		node:     runtimeconfig.FromNodeInfo(node.Status.NodeInfo.ContainerRuntimeVersion),
		hosts:    nodeconfig.Render(selected),
		configs:  map[v1alpha1.ContainerRuntime]*nodeconfig.Config{},
		runtimes: map[string][]v1alpha1.ContainerRuntime{},
		missing:  map[string][]v1alpha1.ContainerRuntime{},
	}
	want := map[v1alpha1.ContainerRuntime][]nodeconfig.Mirror{}
	for _, m := range selected {
		rts := slices.Clone(m.Spec.Runtimes)
		if len(rts) == 0 {
			rts = []v1alpha1.ContainerRuntime{cmp.Or(p.node.Name, v1alpha1.RuntimeContainerd)}
		}
		slices.Sort(rts)
		for _, rt := range slices.Compact(rts) {
			if r.Roots[rt] == nil {
				p.missing[m.Name] = append(p.missing[m.Name], rt)
				continue
			}
			want[rt] = append(want[rt], m)
			p.runtimes[m.Name] = append(p.runtimes[m.Name], rt)
		}
	}
	for rt := range r.Roots {
		p.configs[rt] = nodeconfig.RenderFor(rt, want[rt])
	}
	if len(want[v1alpha1.RuntimeContainerd]) > 0 && r.ContainerdConfig != "" {
		p.configPath = r.checkConfigPath(p.node.Major)
	}
	if cfg := p.configs[v1alpha1.RuntimeCRIO]; cfg != nil && r.CRIORoot != "" {
		p.shadowed = checkDropIns(r.CRIORoot, cfg)
	}
	return p
}

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
// containerd reads the root the agent writes.
func (r *Reconciler) checkConfigPath(major int) string {
	data, err := os.ReadFile(r.ContainerdConfig)
	switch {
	case os.IsNotExist(err):
		data = nil
	case err != nil:
		return "" // unreadable: nothing to say for sure; the probe still runs
	}
	return runtimeconfig.ConfigPathProblem(r.ContainerdConfigOnHost, data, major, r.ContainerdRootOnHost)
}

// problems collects, per mirror, what keeps it from being used on this node, with the
// reason: unsafe input, host conflicts, what a runtime cannot express, a runtime the agent
// cannot write, and a containerd that ignores the root.
func (p *plan) problems() (map[string]string, map[string]v1alpha1.ConditionReason) {
	errs, reasons := map[string]string{}, map[string]v1alpha1.ConditionReason{}
	seen := map[string]bool{}
	add := func(mirror, msg string, reason v1alpha1.ConditionReason) {
		if seen[mirror+"\x00"+msg] {
			return
		}
		seen[mirror+"\x00"+msg] = true
		errs[mirror] = joinErr(errs[mirror], msg)
		if reasons[mirror] == "" {
			reasons[mirror] = reason
		}
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
		if errs[mirror] == "" {
			add(mirror, msg, v1alpha1.ReasonForeignConfigWins)
		}
	}
	if p.configPath != "" {
		for mirror, rts := range p.runtimes {
			if slices.Contains(rts, v1alpha1.RuntimeContainerd) && errs[mirror] == "" {
				add(mirror, p.configPath, v1alpha1.ReasonConfigPathNotSet)
			}
		}
	}
	return errs, reasons
}

// mirrorHash digests what the node holds for one mirror in every runtime.
func (p *plan) mirrorHash(mirror string) string {
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

// hash digests everything the node applied.
func (p *plan) hash() string {
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

// allReasons reports whether every reason is want.
func allReasons(reasons map[string]v1alpha1.ConditionReason, want v1alpha1.ConditionReason) bool {
	for _, r := range reasons {
		if r != want {
			return false
		}
	}
	return len(reasons) > 0
}
