package nodeconfig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

type expectHost struct {
	scheme, host, path string
	caps               docker.HostCapabilities
	// verifies is a server name whose certificate, issued by the scenario's CA, the
	// host's TLS configuration must accept ("" when no CA is configured).
	verifies   string
	skipVerify bool
	// clientCert is true when the host presents the scenario's client certificate.
	clientCert bool
}

type scenario struct {
	name    string
	mirrors func(ca string) []nodeconfig.Mirror
	// hosts maps a registry host as in image references to what containerd resolves.
	hosts     map[string][]expectHost
	conflicts []nodeconfig.Conflict
	errors    []string
	// crio maps an image reference to the sources containers/image (CRI-O, podman,
	// skopeo) pulls it from, in order, leaving out blocked ones.
	crio map[string][]expectSource
	// crioErrors and dockerErrors are the mirrors CRI-O's and Docker's formats refuse.
	crioErrors, dockerErrors []string
	// dockerNotes are "<mirror>: <field>" of what Docker's format leaves out of a mirror it
	// applies.
	dockerNotes []string
	// docker maps a registry host to the server name its certs.d CA must verify.
	docker map[string]string
}

// expectSource is one place containers/image tries for an image.
type expectSource struct {
	ref string
	// verifies is a server name whose certificate, issued by the scenario's CA, the
	// source's certs.d directory must make trusted ("" when none is configured).
	verifies string
	insecure bool
	// clientCert is true when the source's certs.d holds the client certificate.
	clientCert bool
}

func mirror(name, host string, mutate func(*nodeconfig.Mirror)) nodeconfig.Mirror {
	m := nodeconfig.Mirror{Name: name, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Spec: v1alpha1.RegistryMirrorSpec{Host: v1alpha1.RegistryHost(host)}}
	if mutate != nil {
		mutate(&m)
	}
	return m
}

const pullResolve = docker.HostCapabilityPull | docker.HostCapabilityResolve

var unsafeErrors = []string{
	`RegistryMirror bad-path: spec.mirrorOf[0].path: path "/v2/../../x" must not contain '.' or '..' segments`,
	`RegistryMirror escape: spec.host: host "../../etc": must not contain '/' or '\'`,
}

var mismatchErrors = []string{"RegistryMirror mismatch: client certificate: tls: private key does not match public key"}

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
		crio:   map[string][]expectSource{"nexus.local/my-docker/hello:1.0": {{ref: "nexus.local/my-docker/hello:1.0", verifies: "nexus.local"}}},
		docker: map[string]string{"nexus.local": "nexus.local"},
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
		crioErrors:   []string{"RegistryMirror nexus-repo: spec.endpoint: containers-registries.conf(5) names a mirror by host and namespace, which it requests at /v2/<namespace>; path /repository/my-docker/v2 cannot be expressed: serve the repository with path-based routing (/v2/<repository>) or set runtimes to [containerd]"},
		dockerErrors: []string{"RegistryMirror nexus-repo: spec.endpoint: Docker Engine reaches the registry an image names at https://<host>/v2; endpoint https://nexus.local:8443/repository/my-docker/v2 cannot be expressed: remove docker from runtimes for this mirror"},
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
		crio: map[string][]expectSource{
			"docker.io/library/hello:1.0": {
				{ref: "nexus.local/docker-proxy/library/hello:1.0", verifies: "nexus.local"},
				{ref: "docker.io/library/hello:1.0"},
			},
			"ghcr.io/org/app:2": {{ref: "nexus.local/org/app:2", verifies: "nexus.local"}, {ref: "ghcr.io/org/app:2"}},
		},
		docker:      map[string]string{"nexus.local": "nexus.local"},
		dockerNotes: []string{"nexus-proxy: spec.mirrorOf"},
	},
	{
		name: "skipFallback: docker.io is pulled from the mirror only, never from Docker Hub",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("air-gap", "nexus.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.Spec.SkipFallback = true
				m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}}
			})}
		},
		hosts: map[string][]expectHost{
			"docker.io": {{scheme: "https", host: "nexus.local", path: "/v2/docker-proxy", caps: pullResolve, verifies: "nexus.local"}},
		},
		crio: map[string][]expectSource{
			"docker.io/library/hello:1.0":     {{ref: "nexus.local/docker-proxy/library/hello:1.0", verifies: "nexus.local"}},
			"nexus.local/my-docker/hello:1.0": {{ref: "nexus.local/my-docker/hello:1.0", verifies: "nexus.local"}},
		},
		docker:      map[string]string{"nexus.local": "nexus.local"},
		dockerNotes: []string{"air-gap: spec.mirrorOf"},
	},
	{
		name: "_default sends every other registry through the mirror, falling back to each registry",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("everything", "mirror.local:5000", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: v1alpha1.DefaultHost}}
			})}
		},
		hosts: map[string][]expectHost{
			"quay.io": {
				{scheme: "https", host: "mirror.local:5000", path: "/v2", caps: pullResolve, verifies: "mirror.local"},
				{scheme: "https", host: "quay.io", path: "/v2", caps: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush | docker.HostCapabilityReferrers},
			},
			"docker.io": {
				{scheme: "https", host: "mirror.local:5000", path: "/v2", caps: pullResolve, verifies: "mirror.local"},
				{scheme: "https", host: "registry-1.docker.io", path: "/v2", caps: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush | docker.HostCapabilityReferrers},
			},
			"mirror.local:5000": {{scheme: "https", host: "mirror.local:5000", path: "/v2", caps: pullResolve, verifies: "mirror.local"}},
		},
		crioErrors:  []string{"RegistryMirror everything: spec.mirrorOf[0].host: CRI-O's registries.conf has no entry for every registry (_default is containerd's); list the upstream hosts instead, or set runtimes to [containerd]"},
		docker:      map[string]string{"mirror.local:5000": "mirror.local"},
		dockerNotes: []string{"everything: spec.mirrorOf"},
	},
	{
		name: "_default with skipFallback: no registry is contacted but the mirror",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("only-mirror", "mirror.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.Spec.SkipFallback = true
				m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: v1alpha1.DefaultHost}, {Host: "ghcr.io", Path: "/v2/ghcr-proxy"}}
			})}
		},
		hosts: map[string][]expectHost{
			"quay.io":   {{scheme: "https", host: "mirror.local", path: "/v2", caps: pullResolve, verifies: "mirror.local"}},
			"docker.io": {{scheme: "https", host: "mirror.local", path: "/v2", caps: pullResolve, verifies: "mirror.local"}},
			"ghcr.io":   {{scheme: "https", host: "mirror.local", path: "/v2/ghcr-proxy", caps: pullResolve, verifies: "mirror.local"}},
		},
		crioErrors:  []string{"RegistryMirror only-mirror: spec.mirrorOf[0].host: CRI-O's registries.conf has no entry for every registry (_default is containerd's); list the upstream hosts instead, or set runtimes to [containerd]"},
		docker:      map[string]string{"mirror.local": "mirror.local"},
		dockerNotes: []string{"only-mirror: spec.mirrorOf"},
	},
	{
		name: "a registry that requires a client certificate (mutual TLS)",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("mtls", "mtls.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.ClientCert, m.ClientKey = clientPair()
				m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}}
			})}
		},
		hosts: map[string][]expectHost{
			"mtls.local": {{scheme: "https", host: "mtls.local", path: "/v2", caps: pullResolve, verifies: "mtls.local", clientCert: true}},
			"docker.io": {
				{scheme: "https", host: "mtls.local", path: "/v2/docker-proxy", caps: pullResolve, verifies: "mtls.local", clientCert: true},
				{scheme: "https", host: "registry-1.docker.io", path: "/v2", caps: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush | docker.HostCapabilityReferrers},
			},
		},
		crio: map[string][]expectSource{
			"mtls.local/app:1":            {{ref: "mtls.local/app:1", verifies: "mtls.local", clientCert: true}},
			"docker.io/library/hello:1.0": {{ref: "mtls.local/docker-proxy/library/hello:1.0", verifies: "mtls.local", clientCert: true}, {ref: "docker.io/library/hello:1.0"}},
		},
		docker:      map[string]string{"mtls.local": "mtls.local"},
		dockerNotes: []string{"mtls: spec.mirrorOf"},
	},
	{
		name: "a client certificate for Docker Engine goes next to the CA",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("mtls-docker", "mtls.local:8443", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.ClientCert, m.ClientKey = clientPair()
			})}
		},
		hosts: map[string][]expectHost{
			"mtls.local:8443": {{scheme: "https", host: "mtls.local:8443", path: "/v2", caps: pullResolve, verifies: "mtls.local", clientCert: true}},
		},
		crio:   map[string][]expectSource{"mtls.local:8443/app:1": {{ref: "mtls.local:8443/app:1", verifies: "mtls.local", clientCert: true}}},
		docker: map[string]string{"mtls.local:8443": "mtls.local"},
	},
	{
		name: "a key that does not match its certificate is refused without quoting either",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("mismatch", "mismatch.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.ClientCert, _ = clientPair()
				_, m.ClientKey = otherClientPair()
			})}
		},
		errors:       mismatchErrors,
		crioErrors:   mismatchErrors,
		dockerErrors: mismatchErrors,
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
		crio:         map[string][]expectSource{"registry.lab:5000/app:1": {{ref: "registry.lab:5000/app:1", insecure: true}}},
		dockerErrors: []string{"RegistryMirror lab: spec.insecureSkipVerify: Docker Engine skips TLS verification only for insecure-registries in daemon.json, which regwire does not change; give the CA instead"},
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
		conflicts:    []nodeconfig.Conflict{{Mirror: "younger", Dir: "nexus.local", Winner: "older"}},
		crio:         map[string][]expectSource{"nexus.local/app:1": {{ref: "nexus.local/app:1", verifies: "nexus.local"}}},
		docker:       map[string]string{"nexus.local": "nexus.local"},
		dockerErrors: []string{"RegistryMirror younger: spec.endpoint: Docker Engine reaches the registry an image names at https://<host>/v2; endpoint https://other.example cannot be expressed: remove docker from runtimes for this mirror"},
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
		conflicts:   []nodeconfig.Conflict{{Mirror: "hub-mirror", Dir: "ghcr.io", Winner: "ghcr"}},
		crio:        map[string][]expectSource{"ghcr.io/org/app:2": {{ref: "ghcr.io/org/app:2"}}},
		dockerNotes: []string{"hub-mirror: spec.mirrorOf"},
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
		errors:       unsafeErrors,
		crioErrors:   unsafeErrors,
		dockerErrors: unsafeErrors,
		crio:         map[string][]expectSource{"fine.local/app:1": {{ref: "fine.local/app:1"}}},
	},
	{
		name: "fallback endpoints: replicas tried in order, nothing else contacted",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("replicas", "nexus.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.Spec.Endpoint = "https://nexus-a.local"
				m.Spec.FallbackEndpoints = []v1alpha1.EndpointURL{"https://nexus-b.local:8443"}
			})}
		},
		hosts: map[string][]expectHost{
			"nexus.local": {
				{scheme: "https", host: "nexus-a.local", path: "/v2", caps: pullResolve, verifies: "nexus-a.local"},
				{scheme: "https", host: "nexus-b.local:8443", path: "/v2", caps: pullResolve, verifies: "nexus-b.local"},
			},
		},
		crio: map[string][]expectSource{"nexus.local/app:1": {
			{ref: "nexus-a.local/app:1", verifies: "nexus-a.local"},
			{ref: "nexus-b.local:8443/app:1", verifies: "nexus-b.local"},
		}},
		dockerErrors: []string{"RegistryMirror replicas: spec.endpoint: Docker Engine reaches the registry an image names at https://<host>/v2; endpoint https://nexus-a.local cannot be expressed: remove docker from runtimes for this mirror"},
	},
	{
		name: "an air-gapped docker.io through two mirror sites, in order",
		mirrors: func(ca string) []nodeconfig.Mirror {
			return []nodeconfig.Mirror{mirror("two-sites", "nexus.local", func(m *nodeconfig.Mirror) {
				m.CA = []byte(ca)
				m.Spec.FallbackEndpoints = []v1alpha1.EndpointURL{"https://nexus.site-b.example"}
				m.Spec.SkipFallback = true
				m.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}}
			})}
		},
		hosts: map[string][]expectHost{
			"docker.io": {
				{scheme: "https", host: "nexus.local", path: "/v2/docker-proxy", caps: pullResolve, verifies: "nexus.local"},
				{scheme: "https", host: "nexus.site-b.example", path: "/v2/docker-proxy", caps: pullResolve, verifies: "nexus.site-b.example"},
			},
		},
		crio: map[string][]expectSource{"docker.io/library/hello:1.0": {
			{ref: "nexus.local/docker-proxy/library/hello:1.0", verifies: "nexus.local"},
			{ref: "nexus.site-b.example/docker-proxy/library/hello:1.0", verifies: "nexus.site-b.example"},
		}},
		docker:      map[string]string{"nexus.local": "nexus.local"},
		dockerNotes: []string{"two-sites: spec.mirrorOf", "two-sites: spec.fallbackEndpoints"},
	},
}

func scenarioNamed(t *testing.T, name string) scenario {
	t.Helper()
	i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
	if i < 0 {
		t.Fatalf("no scenario %q", name)
	}
	return scenarios[i]
}

func TestRenderMatchesGoldenFiles(t *testing.T) {
	t.Parallel()
	for i, sc := range scenarios {
		for _, rt := range []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd, v1alpha1.RuntimeCRIO, v1alpha1.RuntimeDocker} {
			t.Run(string(rt)+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				c := nodeconfig.RenderFor(rt, sc.mirrors(testutil.SampleCAPEM))
				suffix := ""
				if rt != v1alpha1.RuntimeContainerd {
					suffix = "." + string(rt)
				}
				golden := filepath.Join("testdata", fmt.Sprintf("%02d%s.golden", i, suffix))
				checkGolden(t, golden, describe(sc.name, c))
			})
		}
	}
}

func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
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
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "\n=== note\n%s: %s: %s\n", n.Mirror, n.Field, n.Text)
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
			writeTree(t, root, c.Files)
			for p, data := range c.Files {
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
	if want.clientCert != (tlsConf != nil && len(tlsConf.Certificates) == 1) {
		t.Errorf("%s: client certificates %d, want one: %v", what, len(tlsConf.Certificates), want.clientCert)
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

// clientPair is a fixed client certificate and key (testdata/client-test-only.*, a
// throwaway pair made for these tests), so that golden files are stable; otherClientPair
// is another one.
var (
	clientPair = sync.OnceValues(func() ([]byte, []byte) {
		cert, err := os.ReadFile(filepath.Join("testdata", "client-test-only.cert"))
		if err != nil {
			panic(err)
		}
		key, err := os.ReadFile(filepath.Join("testdata", "client-test-only.key"))
		if err != nil {
			panic(err)
		}
		return cert, key
	})
	otherClientPair = sync.OnceValues(newClientPair)
)

func newClientPair() ([]byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
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
	ms := scenarioNamed(t, "two mirrors claiming one host: the older wins and the younger is told").mirrors(testutil.SampleCAPEM)
	c := nodeconfig.Render(ms)
	if c.MirrorHash("older") == "" || c.MirrorHash("younger") != "" {
		t.Errorf("MirrorHash: older %q, younger %q; want a hash only for the winner", c.MirrorHash("older"), c.MirrorHash("younger"))
	}
	other := nodeconfig.Render(append(slices.Clone(ms), nodeconfig.Mirror{Name: "third", Spec: v1alpha1.RegistryMirrorSpec{Host: "third.local"}}))
	if other.MirrorHash("older") != c.MirrorHash("older") {
		t.Error("adding another mirror changed the older mirror's hash")
	}
}
