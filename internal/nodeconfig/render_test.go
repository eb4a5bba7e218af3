package nodeconfig_test

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

type expectHost struct {
	scheme, host, path string
	caps               docker.HostCapabilities
	// verifies is a server name whose certificate, issued by the scenario's CA, the
	// host's TLS configuration must accept ("" when no CA is configured).
	verifies   string
	skipVerify bool
}

type scenario struct {
	name    string
	mirrors func(ca string) []nodeconfig.Mirror
	// hosts maps a registry host as in image references to what containerd resolves.
	hosts     map[string][]expectHost
	conflicts []nodeconfig.Conflict
	errors    []string
}

func mirror(name, host string, mutate func(*nodeconfig.Mirror)) nodeconfig.Mirror {
	m := nodeconfig.Mirror{Name: name, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Spec: v1alpha1.RegistryMirrorSpec{Host: v1alpha1.RegistryHost(host)}}
	if mutate != nil {
		mutate(&m)
	}
	return m
}

const pullResolve = docker.HostCapabilityPull | docker.HostCapabilityResolve

var scenarios = []scenario{
	{
		name: "nexus.local with a private CA and a host alias, as teams run it",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("nexus-local", "nexus.local", func(m *nodeconfig.Mirror) {
				m.Spec.Endpoint = "https://nexus.local"
				m.CA = []byte(ca)
				m.Spec.HostAliases = []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.local"}}}
			})}
		},
		hosts: map[string][]expectHost{
			"nexus.local": {{scheme: "https", host: "nexus.local", path: "/v2", caps: pullResolve, verifies: "nexus.local"}},
		},
	},
	{
		name: "a host with a port served from a Nexus repository path",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("nexus-repo", "nexus.local:8443", func(m *nodeconfig.Mirror) {
				m.Spec.Endpoint = "https://nexus.local:8443/repository/my-docker/v2"
				m.CA = []byte(ca)
			})}
		},
		hosts: map[string][]expectHost{
			"nexus.local:8443": {{scheme: "https", host: "nexus.local:8443", path: "/repository/my-docker/v2", caps: pullResolve, verifies: "nexus.local"}},
		},
	},
	{
		name: "docker.io mirrored through a Nexus proxy repository falls back to Docker Hub",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("nexus-proxy", "nexus.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}, {Host: "ghcr.io"}}
			})}
		},
		hosts: map[string][]expectHost{
			"nexus.local": {{scheme: "https", host: "nexus.local", path: "/v2", caps: pullResolve, verifies: "nexus.local"}},
			"docker.io": {
				{scheme: "https", host: "nexus.local", path: "/v2/docker-proxy", caps: pullResolve, verifies: "nexus.local"},
				{scheme: "https", host: "registry-1.docker.io", path: "/v2", caps: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush | docker.HostCapabilityReferrers},
			},
			"ghcr.io": {
				{scheme: "https", host: "nexus.local", path: "/v2", caps: pullResolve, verifies: "nexus.local"},
				{scheme: "https", host: "ghcr.io", path: "/v2", caps: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush | docker.HostCapabilityReferrers},
			},
		},
	},
	{
		name: "plain http with insecureSkipVerify and push renders no TLS settings",
		mirrors: func(string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("lab", "registry.lab:5000", func(m *nodeconfig.Mirror) {
				m.Spec.Endpoint = "http://registry.lab:5000"
				m.Spec.InsecureSkipVerify = true
				m.Spec.Capabilities = []v1alpha1.Capability{"push", "pull", "resolve"}
			})}
		},
		hosts: map[string][]expectHost{
			"registry.lab:5000": {{scheme: "http", host: "registry.lab:5000", path: "/v2", caps: pullResolve | docker.HostCapabilityPush}},
		},
	},
	{
		name: "two mirrors claiming one host: the older wins and the younger is told",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{
				mirror("younger", "nexus.local", func(m *nodeconfig.Mirror) {
					m.Created = m.Created.Add(time.Hour)
					m.Spec.Endpoint = "https://other.example"
				}),
				mirror("older", "nexus.local", func(m *nodeconfig.Mirror) { m.CA = []byte(ca) }),
			}
		},
		hosts: map[string][]expectHost{
			"nexus.local": {{scheme: "https", host: "nexus.local", path: "/v2", caps: pullResolve, verifies: "nexus.local"}},
		},
		conflicts: []nodeconfig.Conflict{{Mirror: "younger", Dir: "nexus.local", Winner: "older"}},
	},
	{
		name: "a registry's own host beats another mirror's upstream claim",
		mirrors: func(string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{
				mirror("hub-mirror", "mirror.local", func(m *nodeconfig.Mirror) {
					m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "ghcr.io"}}
				}),
				mirror("ghcr", "ghcr.io", func(m *nodeconfig.Mirror) { m.Created = m.Created.Add(time.Hour) }),
			}
		},
		hosts: map[string][]expectHost{
			"ghcr.io": {{scheme: "https", host: "ghcr.io", path: "/v2", caps: pullResolve}},
		},
		conflicts: []nodeconfig.Conflict{{Mirror: "hub-mirror", Dir: "ghcr.io", Winner: "ghcr"}},
	},
	{
		name: "an unsafe mirror is refused while the others still render",
		mirrors: func(string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{
				mirror("escape", "../../etc", nil),
				mirror("bad-path", "ok.local", func(m *nodeconfig.Mirror) {
					m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/../../x"}}
				}),
				mirror("fine", "fine.local", nil),
			}
		},
		hosts: map[string][]expectHost{
			"fine.local": {{scheme: "https", host: "fine.local", path: "/v2", caps: pullResolve}},
		},
		errors: []string{
			`RegistryMirror bad-path: spec.mirrorOf[0].path: path "/v2/../../x" must not contain '.' or '..' segments`,
			`RegistryMirror escape: spec.host: host "../../etc": must not contain '/' or '\'`,
		},
	},
}

func TestRenderMatchesGoldenFiles(t *testing.T) {
	t.Parallel()
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			c := nodeconfig.Render(sc.mirrors(testutil.SampleCAPEM))
			golden := filepath.Join("testdata", fmt.Sprintf("%02d.golden", i))
			got := describe(sc.name, c)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/nodeconfig -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("rendered config differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// describe prints a Config as a golden file: every file, then entries, conflicts, errors.
func describe(name string, c *nodeconfig.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", name)
	paths := make([]string, 0, len(c.Files))
	for p := range c.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		fmt.Fprintf(&b, "\n=== %s\n%s", p, c.Files[p])
	}
	for _, e := range c.HostsEntries {
		fmt.Fprintf(&b, "\n=== /etc/hosts (%s)\n%s %s\n", e.Mirror, e.IP, strings.Join(e.Hostnames, " "))
	}
	for _, x := range c.Conflicts {
		fmt.Fprintf(&b, "\n=== conflict\n%s wanted %s: %s\n", x.Mirror, x.Dir, x)
	}
	for _, e := range c.Errors {
		fmt.Fprintf(&b, "\n=== error\n%s\n", e)
	}
	return b.String()
}

// TestContainerdResolvesRenderedConfig writes every scenario to a directory and asks
// containerd's own resolver configuration what it would do for each host.
func TestContainerdResolvesRenderedConfig(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			ca := testutil.NewCA(t, "scenario CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			c := nodeconfig.Render(sc.mirrors(ca.PEM))
			root := t.TempDir()
			for p, data := range c.Files {
				full := filepath.Join(root, filepath.FromSlash(p))
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, data, 0o644); err != nil {
					t.Fatal(err)
				}
				// containerd 1.6 (Debian 12's, among others) reads a hosts.toml only when it
				// has a host table: getSortedHosts fails with "invalid `host` tree"
				// otherwise and the file is ignored.
				var tree map[string]any
				if err := toml.Unmarshal(data, &tree); filepath.Base(p) == nodeconfig.HostsFile && (err != nil || tree["host"] == nil) {
					t.Errorf("%s has no host table (containerd 1.6 would ignore it): %v\n%s", p, err, data)
				}
			}
			resolve := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(root)})
			for host, want := range sc.hosts {
				got, err := resolve(host)
				if err != nil {
					t.Fatalf("containerd failed to configure %s: %v", host, err)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: containerd resolved %d hosts, want %d: %+v", host, len(got), len(want), got)
				}
				for i, w := range want {
					checkHost(t, fmt.Sprintf("%s[%d]", host, i), got[i], w, ca)
				}
			}
			if !slices.Equal(c.Conflicts, sc.conflicts) {
				t.Errorf("conflicts = %v, want %v", c.Conflicts, sc.conflicts)
			}
			var errs []string
			for _, e := range c.Errors {
				errs = append(errs, e.Error())
			}
			slices.Sort(errs)
			if !slices.Equal(errs, sc.errors) {
				t.Errorf("errors = %q, want %q", errs, sc.errors)
			}
		})
	}
}

func checkHost(t *testing.T, what string, got docker.RegistryHost, want expectHost, ca *testutil.CA) {
	t.Helper()
	if got.Scheme != want.scheme || got.Host != want.host || got.Path != want.path {
		t.Errorf("%s: containerd resolved %s://%s%s, want %s://%s%s", what, got.Scheme, got.Host, got.Path, want.scheme, want.host, want.path)
	}
	if got.Capabilities != want.caps {
		t.Errorf("%s: capabilities %b, want %b", what, got.Capabilities, want.caps)
	}
	tr, ok := got.Client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("%s: transport is %T", what, got.Client.Transport)
	}
	tlsConf := tr.TLSClientConfig
	if want.skipVerify != (tlsConf != nil && tlsConf.InsecureSkipVerify) {
		t.Errorf("%s: skip_verify = %v, want %v", what, tlsConf != nil && tlsConf.InsecureSkipVerify, want.skipVerify)
	}
	if want.verifies == "" {
		return
	}
	if tlsConf == nil || tlsConf.RootCAs == nil {
		t.Fatalf("%s: no RootCAs configured; the CA was not picked up", what)
	}
	leaf := ca.Leaf(t, want.verifies)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: want.verifies, Roots: tlsConf.RootCAs}); err != nil {
		t.Errorf("%s: a certificate for %s issued by the mirror's CA does not verify with containerd's RootCAs: %v", what, want.verifies, err)
	}
}

func TestHashChangesWithContentOnly(t *testing.T) {
	t.Parallel()
	ms := scenarios[2].mirrors(testutil.SampleCAPEM)
	a, b := nodeconfig.Render(ms), nodeconfig.Render(slices.Clone(ms))
	if a.Hash() != b.Hash() {
		t.Error("the same input rendered two different hashes")
	}
	ms[0].Spec.Capabilities = []v1alpha1.Capability{"pull"}
	if nodeconfig.Render(ms).Hash() == a.Hash() {
		t.Error("a capability change did not change the hash")
	}
}

func TestMirrorHashCoversOnlyThatMirror(t *testing.T) {
	t.Parallel()
	ms := scenarios[4].mirrors(testutil.SampleCAPEM) // two mirrors, one host: the older wins
	c := nodeconfig.Render(ms)
	if c.MirrorHash("older") == "" || c.MirrorHash("younger") != "" {
		t.Errorf("MirrorHash: older %q, younger %q; want a hash only for the winner", c.MirrorHash("older"), c.MirrorHash("younger"))
	}
	other := nodeconfig.Render(append(slices.Clone(ms), nodeconfig.Mirror{Name: "third", Spec: v1alpha1.RegistryMirrorSpec{Host: "third.local"}}))
	if other.MirrorHash("older") != c.MirrorHash("older") {
		t.Error("adding another mirror changed the older mirror's hash")
	}
}
