package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/test/testutil"
)

func TestNodeApplyWritesThenReleasesAPlainHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root, hosts := filepath.Join(dir, "certs.d"), filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := testutil.NewCA(t, "node apply CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	mirrors := filepath.Join(dir, "mirrors.yaml")
	doc := `apiVersion: regwire.dev/v1alpha1
kind: RegistryMirror
metadata:
  name: nexus
spec:
  host: nexus.local:8443
  endpoint: https://nexus.local:8443/repository/my-docker/v2
  caBundle: |
` + indent(ca.PEM, "    ") + `  hostAliases:
    - ip: 172.18.0.3
      hostnames: [nexus.local]
---
`
	if err := os.WriteFile(mirrors, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := execute("node", "apply", "-f", mirrors, "--root", root, "--hosts-file", hosts)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"written   nexus.local:8443/hosts.toml", "written   nexus.local:8443/ca.crt", "(1 entries)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	toml, _ := os.ReadFile(filepath.Join(root, "nexus.local:8443", "hosts.toml"))
	if !strings.Contains(string(toml), "override_path = true") {
		t.Errorf("hosts.toml:\n%s", toml)
	}
	if h, _ := os.ReadFile(hosts); !strings.Contains(string(h), "172.18.0.3\tnexus.local") {
		t.Errorf("hosts file:\n%s", h)
	}
	if out, err := execute("node", "apply", "-f", mirrors, "--root", root, "--hosts-file", hosts); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("second apply: %v\n%s", err, out)
	}

	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := execute("node", "apply", "-f", empty, "--root", root, "--hosts-file", hosts); err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 || entries[0].Name() != ".regwire" {
		t.Errorf("root after release holds %v, want only regwire's state", entries)
	}
	if h, _ := os.ReadFile(hosts); string(h) != "127.0.0.1 localhost\n" {
		t.Errorf("hosts file after release: %q", h)
	}
}

func TestNodeApplyRefusesBadFiles(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, doc, err string }{
		{"an unknown field is named", "apiVersion: regwire.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: x}\nspec: {host: a.local, hots: b}\n", `unknown field "spec.hots"`},
		{"another kind is refused", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "want regwire.dev/v1alpha1 RegistryMirror"},
		{"caFrom needs a cluster", "apiVersion: regwire.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: x}\nspec: {host: a.local, caFrom: {configMapKeyRef: {namespace: a, name: b, key: c}}}\n", "put the PEM in spec.caBundle"},
		{"an unsafe host is refused, naming the field", "apiVersion: regwire.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: x}\nspec: {host: ../../etc}\n", "spec.host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			f := filepath.Join(dir, "m.yaml")
			if err := os.WriteFile(f, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := execute("node", "apply", "-f", f, "--root", filepath.Join(dir, "root"), "--hosts-file", "")
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestAgentNeedsANodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	if _, err := execute("agent", "--root", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Errorf("err = %v, want one naming --node-name", err)
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}

func TestNodeApplyWritesEachRuntimesFormat(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "node apply CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	doc := `apiVersion: regwire.dev/v1alpha1
kind: RegistryMirror
metadata:
  name: nexus
spec:
  host: nexus.local
  caBundle: |
` + indent(ca.PEM, "    ")
	proxy := doc + `  mirrorOf: [{host: docker.io, path: /v2/docker-proxy}]
  skipFallback: true
`
	cases := []struct {
		name, runtime, doc string
		want               []string
		err                string
	}{
		{"crio gets a drop-in and certs.d", "crio", proxy, []string{"written   certs.d/nexus.local/ca.crt", "written   registries.conf.d/regwire-nexus.conf"}, ""},
		{"docker gets certs.d", "docker", doc, []string{"written   nexus.local/ca.crt"}, ""},
		{"docker trusts a mirrorOf mirror's own host and notes the rest", "docker", proxy, []string{"written   nexus.local/ca.crt",
			"note      RegistryMirror nexus: docker: spec.mirrorOf: Docker Engine sends only Docker Hub pulls to a mirror"}, ""},
		{"an unknown runtime is named", "cri-o", doc, nil, `--runtime "cri-o": want containerd, crio or docker`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mirrors := filepath.Join(dir, "mirrors.yaml")
			if err := os.WriteFile(mirrors, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := execute("node", "apply", "-f", mirrors, "--runtime", tc.runtime, "--root", dir, "--hosts-file", "")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q\n%s", err, tc.err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestNodeApplyTakesClientCertificatesFromADirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "node apply CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cert, key := ca.ClientPEM(t, "laptop")
	certs := filepath.Join(dir, "client-certificates")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(certs, "mtls.crt"), cert, 0o600)
	_ = os.WriteFile(filepath.Join(certs, "mtls.key"), key, 0o600)
	mirrors := filepath.Join(dir, "mirrors.yaml")
	doc := "apiVersion: regwire.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: mtls}\nspec:\n  host: mtls.local\n  clientCertificateSecretRef: {namespace: certs, name: mtls-client}\n"
	if err := os.WriteFile(mirrors, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "docker-certs.d")
	if _, err := execute("node", "apply", "-f", mirrors, "--runtime", "docker", "--root", root, "--hosts-file", ""); err == nil || !strings.Contains(err.Error(), "--client-certificates DIR holding mtls.crt and mtls.key") {
		t.Fatalf("without --client-certificates: %v", err)
	}
	if out, err := execute("node", "apply", "-f", mirrors, "--runtime", "docker", "--root", root, "--hosts-file", "", "--client-certificates", certs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(root, "mtls.local", "client.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client.key: %v %v, want mode 600", err, fi)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "mtls.local", "client.cert")); strings.TrimSpace(string(b)) != strings.TrimSpace(string(cert)) {
		t.Error("client.cert is not the given certificate")
	}
}
