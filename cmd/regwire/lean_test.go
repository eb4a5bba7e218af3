package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTheLeanBuildLinksNoClusterLibraries: bin/regwire (the lean build) is what CI jobs
// start once per repository; every package it links runs its init on every start, so it
// must not link the Kubernetes client libraries, controller-runtime or the laptop tools.
func TestTheLeanBuildLinksNoClusterLibraries(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-tags", "lean", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps -tags lean: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, p := range deps {
		for _, f := range []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "github.com/prometheus/", "sigs.k8s.io/kind/",
			"regwire/controllers", "regwire/bootstrap", "go.etcd.io/etcd"} {
			if strings.Contains(p, f) {
				t.Errorf("the lean build links %s", p)
			}
		}
	}
	if !strings.Contains(string(out), "regwire/internal/imagecopy\n") {
		t.Error("the lean build lost sync")
	}
	t.Logf("lean build: %d packages", len(deps))
}

// TestTheLeanBuildHandsOtherCommandsToTheFullOne: manager, agent, node and bootstrap run
// regwire-full beside the executable with the same arguments, its exit code kept; without
// it the error says how to get it.
func TestTheLeanBuildHandsOtherCommandsToTheFullOne(t *testing.T) {
	t.Parallel()
	lean := buildLean(t)
	dir := filepath.Dir(lean)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(lean, args...)
		cmd.Env = append(os.Environ(), "PATH="+t.TempDir()) // no regwire-full on PATH
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run("version"); code != 0 || !strings.HasPrefix(out, "regwire ") {
		t.Fatalf("lean version: exit %d: %s", code, out)
	}
	out, code := run("manager", "--help")
	if code == 0 || !strings.Contains(out, "regwire-full is neither beside this executable nor on PATH") || !strings.Contains(out, "make build") {
		t.Fatalf("manager without regwire-full: exit %d: %s", code, out)
	}
	script := "#!/bin/sh\necho \"full: $*\"\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "regwire-full"), []byte(script), 0o755); err != nil { //nolint:gosec // an executable stand-in for regwire-full
		t.Fatal(err)
	}
	for _, args := range [][]string{{"manager", "--leader-elect=false"}, {"agent", "--node-name", "n1"}, {"node", "apply", "-f", "-"}, {"bootstrap", "up"}} {
		out, code := run(args...)
		if code != 3 || strings.TrimSpace(out) != "full: "+strings.Join(args, " ") {
			t.Errorf("%v: exit %d, output %q; want regwire-full's exit 3 and its arguments", args, code, out)
		}
	}
}

// buildLean builds the lean binary (what make build writes as bin/regwire) into a
// directory of its own and returns its path.
func buildLean(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "regwire")
	if out, err := exec.Command("go", "build", "-tags", "lean", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags lean: %v\n%s", err, out)
	}
	return bin
}
