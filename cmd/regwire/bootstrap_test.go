//go:build !operator

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootstrapRenderWritesTheStateDirAndKeepsItOnRerun(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	out, err := execute("bootstrap", "render", "--state-dir", dir, "--host", "nexus.local,nexus.lan", "--ip", "10.0.0.5", "--https-port", "8443")
	if err != nil || !strings.Contains(out, "CA issued, server certificate issued") {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range []string{"tls/ca.crt", "tls/server.key", "nginx.conf", "docker-compose.yaml", "kind.yaml"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("output does not list %s:\n%s", f, out)
		}
	}
	compose, _ := os.ReadFile(filepath.Join(dir, "docker-compose.yaml"))
	if !strings.Contains(string(compose), `published: "8443"`) {
		t.Errorf("--https-port not in docker-compose.yaml:\n%s", compose)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tls/server.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v %v", fi, err)
	}
	out, err = execute("bootstrap", "render", "--state-dir", dir, "--host", "nexus.local,nexus.lan", "--ip", "10.0.0.5", "--https-port", "8443")
	if err != nil || !strings.Contains(out, "CA kept, server certificate kept") {
		t.Errorf("rerun: %v\n%s", err, out)
	}
	if _, err := execute("bootstrap", "render", "--state-dir", dir, "--ip", "not-an-ip"); err == nil || !strings.Contains(err.Error(), "--ip") {
		t.Errorf("a bad --ip: %v", err)
	}
}

func TestBootstrapUpDryRunPrintsThePlan(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	out, err := execute("bootstrap", "up", "--dry-run", "--state-dir", dir, "--host", "registry.lan", "--https-port", "8443", "--image", "regwire:dev")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"+ PUT https://127.0.0.1:8443/service/rest/v1/security/users/admin/change-password",
		"+ docker save --output " + filepath.Join(dir, "regwire-image.tar") + " regwire:dev",
		"run a pod from registry.lan:8443/my-docker/busybox:1.36",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a dry run wrote %s", dir)
	}
	out, err = execute("bootstrap", "down", "--dry-run", "--state-dir", dir)
	if err != nil || !strings.Contains(out, "down --volumes --remove-orphans") {
		t.Errorf("down --dry-run: %v\n%s", err, out)
	}
}
