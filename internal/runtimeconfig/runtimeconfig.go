// Package runtimeconfig reads what a node's container runtime says about itself: which
// runtime a Node runs (status.nodeInfo.containerRuntimeVersion), and whether the node's
// containerd reads the registry host directory regwire writes (config_path). It only
// reads.
package runtimeconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/regwire/regwire/api/v1alpha1"
)

// Runtime is a node's container runtime and its version (0.0 when unknown).
type Runtime struct {
	Name         v1alpha1.ContainerRuntime
	Major, Minor int
	// Version is the version as the node says it, e.g. 1.7.13.
	Version string
}

// AtLeast says whether the runtime's version is known and major.minor or later.
func (r Runtime) AtLeast(major, minor int) bool {
	return r.Major > major || (r.Major == major && r.Minor >= minor)
}

// FromNodeInfo parses status.nodeInfo.containerRuntimeVersion, e.g. containerd://1.7.13,
// cri-o://1.31.0 or docker://27.3.1 (cri-dockerd). An unknown runtime has an empty Name.
func FromNodeInfo(version string) Runtime {
	scheme, rest, ok := strings.Cut(version, "://")
	if !ok {
		return Runtime{}
	}
	var r Runtime
	switch scheme {
	case "containerd":
		r.Name = v1alpha1.RuntimeContainerd
	case "cri-o":
		r.Name = v1alpha1.RuntimeCRIO
	case "docker":
		r.Name = v1alpha1.RuntimeDocker
	default:
		return Runtime{}
	}
	r.Version = strings.TrimPrefix(rest, "v")
	major, after, _ := strings.Cut(r.Version, ".")
	minor, _, _ := strings.Cut(after, ".")
	r.Major, _ = strconv.Atoi(major)
	r.Minor, _ = strconv.Atoi(minor)
	return r
}

// containerd 2.x reads these when its CRI registry has neither config_path nor mirrors
// (plugins/cri/images/plugin.go in containerd v2.4.2).
var containerd2Default = []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"}

// ConfigPathProblem says why containerd, with its configuration file at file (data, or
// nil when the file does not exist) and of major version major (0 when unknown), does not
// read the registry host directory dir; "" when it does, or when regwire cannot tell
// (imports it does not read). The message names the file and the line to add.
//
// Where containerd looks, by config version (containerd's own migrations in
// cmd/containerd/server/config and plugins/cri/images):
//   - version 1 (containerd 1.x, no version key): [plugins.cri.registry] config_path;
//   - version 2 (containerd 1.x; migrated by 2.x): [plugins."io.containerd.grpc.v1.cri".registry];
//   - version 3 and later (containerd 2.x): [plugins."io.containerd.cri.v1.images".registry].
//
// containerd 1.x has no default config_path; 2.x defaults to
// /etc/containerd/certs.d:/etc/docker/certs.d unless the deprecated mirrors are set.
func ConfigPathProblem(file string, data []byte, major int, dir string) string {
	var tree map[string]any
	if data != nil {
		if err := toml.Unmarshal(data, &tree); err != nil {
			return fmt.Sprintf("%s does not parse as TOML (%v); regwire cannot tell whether containerd reads %s", file, err, dir)
		}
	}
	version := 1
	if v, ok := tree["version"].(int64); ok {
		version = int(v)
	}
	if major == 0 && version >= 3 {
		major = 2
	}
	table := `plugins."io.containerd.grpc.v1.cri".registry`
	switch {
	case version == 1:
		table = "plugins.cri.registry"
	case version >= 3:
		table = `plugins."io.containerd.cri.v1.images".registry`
	}
	reg := lookup(tree, splitTable(table)...)
	configPath, _ := reg["config_path"].(string)
	mirrors, _ := reg["mirrors"].(map[string]any)
	fix := fmt.Sprintf("add config_path = %q under [%s] in %s and restart containerd", dir, table, file)
	if configPath == "" {
		if major >= 2 && len(mirrors) == 0 {
			if slices.Contains(containerd2Default, dir) {
				return ""
			}
			return fmt.Sprintf("containerd 2 reads %s by default, not %s: %s", strings.Join(containerd2Default, ":"), dir, fix)
		}
		if _, ok := tree["imports"]; ok {
			return "" // config_path may be set in an imported file regwire does not read
		}
		switch {
		case data == nil:
			return fmt.Sprintf("%s does not exist, so containerd reads no registry host directory: create it with [%s] config_path = %q and restart containerd", file, table, dir)
		case len(mirrors) > 0:
			return fmt.Sprintf("containerd uses the deprecated registry mirrors in %s and ignores %s: replace [%s.mirrors] with config_path = %q and restart containerd", file, dir, table, dir)
		}
		return fmt.Sprintf("containerd does not read %s (config_path is not set): %s", dir, fix)
	}
	for _, p := range strings.Split(configPath, ":") {
		if strings.TrimRight(p, "/") == strings.TrimRight(dir, "/") {
			return ""
		}
	}
	return fmt.Sprintf("containerd reads %s, not %s: set config_path = %q under [%s] in %s (or start the agent with that directory as its root)", configPath, dir, configPath+":"+dir, table, file)
}

// splitTable splits a dotted TOML table name, honouring quoted keys.
func splitTable(name string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range name {
		switch {
		case r == '"':
			quoted = !quoted
		case r == '.' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}

func lookup(tree map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := tree[k].(map[string]any)
		if !ok {
			return nil
		}
		tree = next
	}
	return tree
}

// DropInShadows says which of prefixes (the [[registry]] prefixes of the drop-in named
// ours) containers/image will take from another file instead: drop-ins are read in
// alphabetical order after registries.conf, and a later [[registry]] with the same prefix
// replaces an earlier one (containers-registries.conf.d(5)). dropIns maps the names of the
// other *.conf files in registries.conf.d to their content. It returns "" when none does.
func DropInShadows(ours string, prefixes []string, dropIns map[string][]byte) string {
	var names []string
	for name := range dropIns {
		if name > ours && strings.HasSuffix(name, ".conf") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		var conf struct {
			Registry []struct {
				Prefix   string `toml:"prefix"`
				Location string `toml:"location"`
			} `toml:"registry"`
		}
		if err := toml.Unmarshal(dropIns[name], &conf); err != nil {
			continue // containers/image reports a broken file itself
		}
		for _, r := range conf.Registry {
			p := r.Prefix
			if p == "" {
				p = r.Location
			}
			if slices.Contains(prefixes, p) {
				return fmt.Sprintf("registries.conf.d/%s sorts after %s and configures %s too, so CRI-O uses its [[registry]] instead: remove that entry or rename the file to sort before %s", name, ours, p, ours)
			}
		}
	}
	return ""
}
