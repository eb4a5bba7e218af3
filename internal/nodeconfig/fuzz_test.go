package nodeconfig_test

import (
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// FuzzHostDir: a host either is refused or names exactly one directory inside the root.
func FuzzHostDir(f *testing.F) {
	for _, s := range []string{"nexus.local", "nexus.local:8443", "[fd00::1]:5000", "../x", "a/b", "..", ".", "", "x\x00y", "C:", "a:", "[::1]", "UPPER.local"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		dir, err := nodeconfig.HostDir(host)
		if err != nil {
			if dir != "" {
				t.Fatalf("HostDir(%q) returned %q with error %v", host, dir, err)
			}
			return
		}
		if !filepath.IsLocal(dir) || strings.ContainsAny(dir, "/\\\x00") || dir == "." || dir == ".." {
			t.Fatalf("HostDir(%q) = %q, not a single local directory", host, dir)
		}
		if got := filepath.Join("/root", dir); filepath.Dir(got) != "/root" {
			t.Fatalf("HostDir(%q) = %q escapes the root: %s", host, dir, got)
		}
	})
}

// FuzzRender: whatever the spec, rendering never panics and never names a file outside
// <root>/<host>/, nor, in CRI-O's and Docker's formats, one their layouts do not allow.
func FuzzRender(f *testing.F) {
	f.Add("nexus.local", "https://nexus.local/repository/x/v2", "https://b.local/v2/x", "docker.io", "/v2/docker-proxy", "127.0.0.1", "nexus.local", false)
	f.Add("../etc", "https://a/../b", "https://'/x", "..", "../..", "::1", "a b", true)
	f.Add("r:5000", "http://r:5000", "", "_default", "", "10.0.0.1", "r", true)
	f.Fuzz(func(t *testing.T, host, endpoint, fallback, upstream, upPath, ip, alias string, insecure bool) {
		m := nodeconfig.Mirror{Name: "m", Spec: v1alpha1.RegistryMirrorSpec{
			Host: v1alpha1.RegistryHost(host), Endpoint: endpoint, InsecureSkipVerify: insecure,
			FallbackEndpoints: []v1alpha1.EndpointURL{v1alpha1.EndpointURL(fallback)},
			MirrorOf:          []v1alpha1.UpstreamMirror{{Host: v1alpha1.UpstreamHost(upstream), Path: upPath}},
			HostAliases:       []v1alpha1.HostAlias{{IP: ip, Hostnames: []v1alpha1.Hostname{v1alpha1.Hostname(alias)}}},
		}}
		c := nodeconfig.Render([]nodeconfig.Mirror{m})
		for p := range c.Files {
			dir, file := path.Split(p)
			if !filepath.IsLocal(p) || strings.Count(p, "/") != 1 || strings.ContainsAny(p, "\\\x00") ||
				(file != nodeconfig.HostsFile && file != nodeconfig.CAFile) || dir == "./" || dir == "../" {
				t.Fatalf("rendered file %q is not <host>/hosts.toml or <host>/ca.crt", p)
			}
		}
		for _, rt := range []v1alpha1.ContainerRuntime{v1alpha1.RuntimeCRIO, v1alpha1.RuntimeDocker} {
			for p := range nodeconfig.RenderFor(rt, []nodeconfig.Mirror{m}).Files {
				if err := nodeconfig.CheckPath(rt, p); err != nil || !filepath.IsLocal(p) {
					t.Fatalf("%s: rendered file %q is outside its layout: %v", rt, p, err)
				}
			}
		}
		for _, e := range c.HostsEntries {
			for _, h := range append([]string{e.IP}, e.Hostnames...) {
				if strings.ContainsAny(h, " \t\r\n#\x00") {
					t.Fatalf("/etc/hosts entry field %q would break the file", h)
				}
			}
		}
	})
}
