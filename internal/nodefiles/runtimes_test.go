package nodefiles_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/test/testutil"
)

func proxyMirror() nodeconfig.Mirror {
	return nodeconfig.Mirror{Name: "nexus", Spec: v1alpha1.RegistryMirrorSpec{
		Host: "nexus.local", SkipFallback: true,
		MirrorOf: []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}},
	}, CA: []byte(testutil.SampleCAPEM)}
}

// TestEveryRuntimeLeavesForeignFilesByteIdentical applies a mirror in each runtime's
// format into a root already holding the runtime's own and other tools' files, then
// withdraws it: the foreign files never change, and what regwire created is gone.
func TestEveryRuntimeLeavesForeignFilesByteIdentical(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		runtime v1alpha1.ContainerRuntime
		foreign map[string]string
		want    []string
	}{
		{
			runtime: v1alpha1.RuntimeContainerd,
			foreign: map[string]string{"quay.io/hosts.toml": "server = 'https://quay.io'\n"},
			want:    []string{"docker.io/", "docker.io/ca.crt", "docker.io/hosts.toml", "nexus.local/", "nexus.local/ca.crt", "nexus.local/hosts.toml"},
		},
		{
			runtime: v1alpha1.RuntimeCRIO,
			foreign: map[string]string{
				"registries.conf":                       "unqualified-search-registries = ['docker.io']\n",
				"registries.conf.d/000-shortnames.conf": "[aliases]\n'hello' = 'docker.io/library/hello'\n",
				"certs.d/quay.io/ca.crt":                testutil.SampleCAPEM,
				"policy.json":                           "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n",
			},
			want: []string{"certs.d/nexus.local/", "certs.d/nexus.local/ca.crt", "registries.conf.d/regwire-nexus.conf"},
		},
		{
			runtime: v1alpha1.RuntimeDocker,
			foreign: map[string]string{"quay.io/ca.crt": testutil.SampleCAPEM, "nexus.local/client.cert": "foreign client cert\n"},
			want:    []string{"nexus.local/ca.crt"},
		},
	} {
		t.Run(string(tc.runtime), func(t *testing.T) {
			t.Parallel()
			m := proxyMirror()
			if tc.runtime == v1alpha1.RuntimeDocker {
				m.Spec.MirrorOf, m.Spec.SkipFallback = nil, false
			}
			c := nodeconfig.RenderFor(tc.runtime, []nodeconfig.Mirror{m})
			if len(c.Errors) > 0 {
				t.Fatal(c.Errors)
			}
			root := t.TempDir()
			for p, data := range tc.foreign {
				write(t, root, p, data)
			}
			before := snapshot(t, root)
			f, err := nodefiles.OpenFor(tc.runtime, root)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.ApplyOwned(nodefiles.Desired{Files: c.Files, Owners: c.FileOwners()}); err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, root)
			for p, data := range before {
				if after[p] != data {
					t.Errorf("foreign %s changed", p)
				}
			}
			var added []string
			for p := range after {
				if _, ok := before[p]; !ok {
					added = append(added, p)
				}
			}
			if got := strings.Join(sorted(added), " "); got != strings.Join(tc.want, " ") {
				t.Errorf("wrote %s, want %s", got, strings.Join(tc.want, " "))
			}
			if _, err := f.Apply(nil); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(t, root); !maps.Equal(got, before) {
				t.Errorf("after withdrawing, the root holds %v, want %v", keys(got), keys(before))
			}
			// Directories regwire created are gone with its files; foreign ones stay.
			if tc.runtime == v1alpha1.RuntimeCRIO {
				if _, err := os.Stat(filepath.Join(root, "certs.d", "nexus.local")); !os.IsNotExist(err) {
					t.Errorf("certs.d/nexus.local left behind: %v", err)
				}
			}
		})
	}
}

// TestAFreshCRIORootIsLeftAsFound: the certs.d and registries.conf.d directories regwire
// had to create go away with its last file.
func TestAFreshCRIORootIsLeftAsFound(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f, err := nodefiles.OpenFor(v1alpha1.RuntimeCRIO, root)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := nodeconfig.RenderFor(v1alpha1.RuntimeCRIO, []nodeconfig.Mirror{proxyMirror()})
	if _, err := f.ApplyOwned(nodefiles.Desired{Files: c.Files, Owners: c.FileOwners()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "certs.d", "nexus.local", "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Apply(nil); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != nodefiles.StateDir {
			t.Errorf("%s left behind", e.Name())
		}
	}
}

// TestARuntimeRootRefusesOtherRuntimesPaths: each root accepts only its own format.
func TestARuntimeRootRefusesOtherRuntimesPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		runtime v1alpha1.ContainerRuntime
		path    string
	}{
		{v1alpha1.RuntimeCRIO, "nexus.local/hosts.toml"},
		{v1alpha1.RuntimeCRIO, "registries.conf"},
		{v1alpha1.RuntimeCRIO, "registries.conf.d/000-shortnames.conf"},
		{v1alpha1.RuntimeCRIO, "policy.json"},
		{v1alpha1.RuntimeCRIO, "certs.d/../storage.conf"},
		{v1alpha1.RuntimeDocker, "nexus.local/hosts.toml"},
		{v1alpha1.RuntimeDocker, "_default/ca.crt"},
		{v1alpha1.RuntimeContainerd, "registries.conf.d/regwire-x.conf"},
	} {
		t.Run(string(tc.runtime)+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			f, err := nodefiles.OpenFor(tc.runtime, root)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = f.Apply(map[string][]byte{tc.path: []byte("x")})
			if err == nil || !strings.Contains(err.Error(), "refusing to write") {
				t.Fatalf("Apply(%s) = %v, want a refusal", tc.path, err)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("the refused write left %d entries", len(entries))
			}
		})
	}
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}

func keys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// TestAClientKeyIsWrittenForItsOwnerOnly writes a client pair and checks the key's mode,
// also after someone loosened it.
func TestAClientKeyIsWrittenForItsOwnerOnly(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f, err := nodefiles.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][]byte{"mtls.local/client.cert": []byte("cert\n"), "mtls.local/client.key": []byte("key\n")}
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if _, err := f.Apply(want); err != nil {
		t.Fatal(err)
	}
	if m := mode("mtls.local/client.key"); m != 0o600 {
		t.Errorf("client.key has mode %o, want 600", m)
	}
	if m := mode("mtls.local/client.cert"); m != 0o644 {
		t.Errorf("client.cert has mode %o, want 644", m)
	}
	if err := os.Chmod(filepath.Join(root, "mtls.local", "client.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes, err := f.Apply(want)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode("mtls.local/client.key"); m != 0o600 || len(changes) != 1 || changes[0].Path != "mtls.local/client.key" {
		t.Errorf("after chmod 644 the key has mode %o (changes %v), want 600 again", m, changes)
	}
}
