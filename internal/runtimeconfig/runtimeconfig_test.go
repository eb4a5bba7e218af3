package runtimeconfig_test

import (
	"strings"
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/runtimeconfig"
)

func TestFromNodeInfo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]runtimeconfig.Runtime{
		"containerd://1.7.13":      {Name: v1alpha1.RuntimeContainerd, Major: 1, Minor: 7, Version: "1.7.13"},
		"containerd://2.4.2":       {Name: v1alpha1.RuntimeContainerd, Major: 2, Minor: 4, Version: "2.4.2"},
		"containerd://v2.0.0-k3s1": {Name: v1alpha1.RuntimeContainerd, Major: 2, Minor: 0, Version: "2.0.0-k3s1"},
		"cri-o://1.31.0":           {Name: v1alpha1.RuntimeCRIO, Major: 1, Minor: 31, Version: "1.31.0"},
		"docker://27.3.1":          {Name: v1alpha1.RuntimeDocker, Major: 27, Minor: 3, Version: "27.3.1"},
		"rkt://1.0":                {},
		"":                         {},
	} {
		if got := runtimeconfig.FromNodeInfo(in); got != want {
			t.Errorf("FromNodeInfo(%q) = %+v, want %+v", in, got, want)
		}
	}
}

func TestAtLeastComparesMajorThenMinor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version string
		want    bool
	}{
		{"containerd://2.1.0", true}, {"containerd://2.4.2", true}, {"containerd://3.0.0", true},
		{"containerd://2.0.5", false}, {"containerd://1.7.13", false}, {"", false},
	} {
		if got := runtimeconfig.FromNodeInfo(tc.version).AtLeast(2, 1); got != tc.want {
			t.Errorf("%q at least 2.1: %v, want %v", tc.version, got, tc.want)
		}
	}
}

func TestConfigPathProblem(t *testing.T) {
	t.Parallel()
	const file, dir = "/etc/containerd/config.toml", "/etc/containerd/certs.d"
	cases := []struct {
		name  string
		data  *string
		major int
		// want is "" for no problem, else a substring of the message.
		want string
	}{
		{"kind's config (version 2, config_path set) is read", str("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"), 1, ""},
		{"Debian's containerd 1.6 default (version 2, config_path empty) ignores the directory", str("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n"), 1,
			`add config_path = "/etc/containerd/certs.d" under [plugins."io.containerd.grpc.v1.cri".registry] in /etc/containerd/config.toml`},
		{"a version 1 file names the old table", str("[plugins.cri]\n  sandbox_image = \"pause\"\n"), 1, `under [plugins.cri.registry]`},
		{"containerd 1.x without a file reads nothing", nil, 1, "does not exist"},
		{"containerd 2 without a file reads the default directories", nil, 2, ""},
		{"containerd 2's version 3 file without registry settings reads the defaults", str("version = 3\n"), 0, ""},
		{"containerd 2 with the deprecated mirrors ignores the directory", str("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://m\"]\n"), 2, "deprecated registry mirrors"},
		{"a version 2 file on containerd 2 is migrated from the grpc table", str("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n"), 2, ""},
		{"config_path naming another directory is reported with the fix", str("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/var/lib/rancher/k3s/agent/etc/containerd/certs.d\"\n"), 2,
			`set config_path = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d:/etc/containerd/certs.d"`},
		{"imports regwire does not read are given the benefit of the doubt", str("version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n"), 1, ""},
		{"a file that is not TOML says so", str("version = = 2\n"), 1, "does not parse as TOML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var data []byte
			if tc.data != nil {
				data = []byte(*tc.data)
			}
			got := runtimeconfig.ConfigPathProblem(file, data, tc.major, dir)
			switch {
			case tc.want == "" && got != "":
				t.Errorf("got problem %q, want none", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func str(s string) *string { return &s }

// FuzzConfigPathProblem: whatever a node's containerd configuration holds, the check
// never panics, and a problem always names the file.
func FuzzConfigPathProblem(f *testing.F) {
	f.Add("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n", 1)
	f.Add("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n", 2)
	f.Add("version = 'x'\nplugins = 1\n", 0)
	f.Add("[plugins.cri.registry]\nconfig_path = 7\n", 1)
	f.Fuzz(func(t *testing.T, data string, major int) {
		got := runtimeconfig.ConfigPathProblem("/etc/containerd/config.toml", []byte(data), major, "/etc/containerd/certs.d")
		if got != "" && !strings.Contains(got, "/etc/containerd/config.toml") && !strings.Contains(got, "containerd 2 reads") && !strings.Contains(got, "containerd reads") {
			t.Fatalf("a problem that names no file: %q", got)
		}
	})
}

func TestDropInShadows(t *testing.T) {
	t.Parallel()
	ours := "regwire-nexus.conf"
	prefixes := []string{"nexus.local", "docker.io"}
	cases := []struct {
		name    string
		dropIns map[string][]byte
		want    string
	}{
		{"files before ours do not shadow it", map[string][]byte{"000-shortnames.conf": []byte("[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n")}, ""},
		{"a later file with another prefix does not", map[string][]byte{"zz-quay.conf": []byte("[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n")}, ""},
		{"a later file with the same prefix does, and is named", map[string][]byte{"zz-hub.conf": []byte("[[registry]]\nprefix = \"docker.io\"\nlocation = \"mirror.example\"\n")}, "registries.conf.d/zz-hub.conf sorts after regwire-nexus.conf and configures docker.io too"},
		{"a location without a prefix is its prefix", map[string][]byte{"zz-nexus.conf": []byte("[[registry]]\nlocation = \"nexus.local\"\n")}, "configures nexus.local too"},
		{"files that are not .conf are not read", map[string][]byte{"zz-hub.conf.bak": []byte("[[registry]]\nprefix = \"docker.io\"\nlocation = \"x\"\n")}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := runtimeconfig.DropInShadows(ours, prefixes, tc.dropIns)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
