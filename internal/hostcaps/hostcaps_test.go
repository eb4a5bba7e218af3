package hostcaps

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
)

func TestFilesFindsWhatRuncReads(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want []File
	}{
		{"create with global flags and --bundle", []string{"--root", "/run/r", "--log", "/l.json", "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/b", "--pid-file", "/p", "id"},
			[]File{{Path: "/b/config.json"}}},
		{"create with -b", []string{"create", "-b", "/b", "id"}, []File{{Path: "/b/config.json"}}},
		{"run with --bundle=", []string{"run", "--bundle=/b", "id"}, []File{{Path: "/b/config.json"}}},
		{"create in the bundle directory", []string{"create", "id"}, []File{{Path: "config.json"}}},
		{"exec with --process", []string{"--root", "/run/r", "exec", "--process", "/tmp/p.json", "--detach", "id"}, []File{{Path: "/tmp/p.json", Process: true}}},
		{"exec with -p", []string{"exec", "-p", "/tmp/p.json", "id"}, []File{{Path: "/tmp/p.json", Process: true}}},
		{"exec of a command line reads no file", []string{"exec", "id", "sh"}, nil},
		{"other commands read none", []string{"--root", "/run/r", "state", "id"}, nil},
		{"no command", []string{"--version"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Files(tc.args); !slices.Equal(got, tc.want) {
				t.Errorf("Files(%q) = %v, want %v", tc.args, got, tc.want)
			}
		})
	}
}

func TestFitFileDropsOnlyTheMissingCapabilities(t *testing.T) {
	t.Parallel()
	all := []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"}
	caps := map[string][]string{"bounding": all, "effective": all, "permitted": all, "inheritable": all, "ambient": {"CAP_SYS_RESOURCE"}}
	want := []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"}
	for _, process := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "config.json")
		var doc any = map[string]any{"ociVersion": "1.0.2", "process": map[string]any{"args": []string{"/sbin/init"}, "capabilities": caps}, "vendor.example/x": 1}
		if process {
			doc = map[string]any{"args": []string{"sh"}, "capabilities": caps, "cwd": "/"}
		}
		b, _ := json.Marshal(doc)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := FitFile(path, process, []string{"CAP_SYS_RESOURCE", "CAP_BPF"}); err != nil {
			t.Fatal(err)
		}
		out, _ := os.ReadFile(path)
		var got struct {
			OCIVersion   string `json:"ociVersion"`
			Vendor       int    `json:"vendor.example/x"`
			Cwd          string `json:"cwd"`
			Capabilities map[string][]string
			Process      struct {
				Args         []string `json:"args"`
				Capabilities map[string][]string
			}
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		c := got.Process.Capabilities
		if process {
			c = got.Capabilities
			if got.Cwd != "/" {
				t.Errorf("process file lost cwd: %s", out)
			}
		} else if got.OCIVersion != "1.0.2" || got.Vendor != 1 || !slices.Equal(got.Process.Args, []string{"/sbin/init"}) {
			t.Errorf("config.json lost fields: %s", out)
		}
		for _, set := range []string{"bounding", "effective", "permitted", "inheritable"} {
			if !slices.Equal(c[set], want) {
				t.Errorf("process=%v %s = %v, want %v", process, set, c[set], want)
			}
		}
		if len(c["ambient"]) != 0 {
			t.Errorf("process=%v ambient = %v, want empty", process, c["ambient"])
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v changed", fi.Mode().Perm())
		}
	}
}

func TestFitFileLeavesAFileWithNothingToDropAlone(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.json")
	in := []byte(`{"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}},   "x": 1}`)
	if err := os.WriteFile(path, in, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := FitFile(path, false, []string{"CAP_SYS_RESOURCE"}); err != nil {
		t.Fatal(err)
	}
	if out, _ := os.ReadFile(path); string(out) != string(in) {
		t.Errorf("rewritten: %s", out)
	}
}

func TestMissingReadsTheBoundingSet(t *testing.T) {
	t.Parallel()
	missing, err := Missing()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's own account: CapBnd in /proc/self/status, one bit per capability.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var bnd uint64
	for l := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bnd, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	last, err := capability.LastCap()
	if err != nil {
		t.Fatal(err)
	}
	zero := 0
	for c := 0; c <= int(last); c++ {
		if bnd&(1<<c) == 0 {
			zero++
		}
	}
	if len(missing) != zero {
		t.Errorf("Missing() = %v (%d), but CapBnd %x lacks %d of the %d capabilities", missing, len(missing), bnd, zero, last+1)
	}
	t.Logf("this host's bounding set lacks %v", missing)
}
