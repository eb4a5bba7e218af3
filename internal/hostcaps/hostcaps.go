// Package hostcaps fits an OCI runtime spec to a host whose capability bounding set is short:
// a privileged container asks for every capability the kernel knows, and runc then fails
// with "unable to apply caps: operation not permitted" where the host (itself a
// container, say) cannot grant one of them, such as CAP_SYS_RESOURCE. hack/runc-hostcaps is the
// runtime wrapper built on it; the test harness asks it what the host lacks.
package hostcaps

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
)

// Missing names the capabilities the kernel knows but the calling process's bounding set
// lacks, as OCI names them (CAP_SYS_RESOURCE).
func Missing() ([]string, error) {
	known, err := capability.ListSupported()
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range known {
		ok, err := capability.GetBound(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, ociName(c))
		}
	}
	return missing, nil
}

func ociName(c capability.Cap) string { return "CAP_" + strings.ToUpper(c.String()) }

// File is a runtime spec file that a runc command line names.
type File struct {
	Path string
	// Process is true for a process.json (runc exec --process), false for a bundle's
	// config.json, whose capabilities are under "process".
	Process bool
}

// Files finds in runc's arguments the files whose capabilities matter: the bundle's
// config.json of create and run (--bundle, -b; the working directory when absent) and the
// process file of exec (--process, -p).
func Files(args []string) []File {
	cmd, rest := command(args)
	switch cmd {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return []File{{Path: filepath.Join(bundle, "config.json")}}
	case "exec":
		if p := flagValue(rest, "--process", "-p"); p != "" {
			return []File{{Path: p, Process: true}}
		}
	}
	return nil
}

// command returns runc's command and the arguments after it, skipping the global flags
// before it (those that take a value: --root, --log, --log-format, --criu, --rootless).
func command(args []string) (string, []string) {
	withValue := []string{"--root", "--log", "--log-format", "--criu", "--rootless"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case !strings.HasPrefix(a, "-"):
			return a, args[i+1:]
		case slices.Contains(withValue, a):
			i++
		}
	}
	return "", nil
}

func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

// FitFile removes the missing capabilities from every set (bounding, effective,
// inheritable, permitted, ambient) of the file's process, keeping the rest of the file as
// it is. A file without capabilities is left alone.
func FitFile(path string, process bool, missing []string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc := doc
	if !process {
		raw, ok := doc["process"]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(raw, &proc); err != nil {
			return fmt.Errorf("%s: process: %w", path, err)
		}
	}
	raw, ok := proc["capabilities"]
	if !ok || string(raw) == "null" {
		return nil
	}
	var caps map[string]json.RawMessage
	if err := json.Unmarshal(raw, &caps); err != nil {
		return fmt.Errorf("%s: capabilities: %w", path, err)
	}
	changed := false
	for set, raw := range caps {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%s: capabilities.%s: %w", path, set, err)
		}
		kept := slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(missing, c) })
		if len(kept) != len(list) {
			changed = true
			caps[set], _ = json.Marshal(kept)
		}
	}
	if !changed {
		return nil
	}
	proc["capabilities"], _ = json.Marshal(caps)
	if !process {
		doc["process"], _ = json.Marshal(proc)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".hostcaps"
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
