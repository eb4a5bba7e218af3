//go:build !lean

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandSaysWhatWentWrongByItsExitCode holds the README's promise for every
// command of the full build: 2 when the command line or its input is wrong (nothing is
// tried), 1 when the work was tried and failed, 0 when it was done. The walk over the
// command tree makes a new command part of it at once: an unknown flag and an argument it
// does not take exit 2.
func TestEveryCommandSaysWhatWentWrongByItsExitCode(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-such-kubeconfig"))
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	root := newRootCommand()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var runnable [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Runnable() && c.Name() != "help" {
			runnable = append(runnable, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(root, nil)
	if len(runnable) < 12 {
		t.Fatalf("found only %d commands: %v", len(runnable), runnable)
	}

	type run struct {
		args []string
		code int
	}
	var cases []run
	for _, path := range runnable {
		cases = append(cases, run{append(slices.Clone(path), "--no-such-flag"), exitUsage})
		if c, _, _ := root.Find(path); c.Args != nil && !strings.HasPrefix(path[0], "completion") && path[0] != "sync" {
			cases = append(cases, run{append(slices.Clone(path), "an-argument-it-does-not-take"), exitUsage})
		}
	}
	cases = append(cases,
		// Input each command checks before it tries anything.
		run{[]string{"manager", "--agent-env", "NO-EQUALS-SIGN"}, exitUsage},
		run{[]string{"manager", "--namespace", ""}, exitUsage},
		run{[]string{"manager", "--agent-runtimes", "rkt"}, exitUsage},
		run{[]string{"manager", "--allow-source-cidrs", "localhost"}, exitUsage},
		run{[]string{"manager", "--max-blob-size", "huge"}, exitUsage},
		run{[]string{"sync", "a/b", "c/d", "--tags", "1", "--min-transfer-rate", "-1Ki"}, exitUsage},
		run{[]string{"agent"}, exitUsage}, // no --node-name, no NODE_NAME
		run{[]string{"sync", "a/b", "c/d"}, exitUsage},
		run{[]string{"node", "apply"}, exitUsage}, // -f is required
		run{[]string{"node", "apply", "-f", empty, "--runtime", "rkt"}, exitUsage},
		run{[]string{"node", "apply", "-f", missing, "--root", dir}, exitUsage},
		run{[]string{"bootstrap", "render", "--state-dir", dir, "--ip", "not-an-ip"}, exitUsage},
		run{[]string{"bootstrap", "render", "--state-dir", dir, "--key-type", "dsa"}, exitUsage},
		run{[]string{"bootstrap", "render", "--state-dir", dir, "--kind-config", missing}, exitUsage},
		run{[]string{"bootstrap", "up", "--state-dir", dir, "--kind-config", missing}, exitUsage},
		run{[]string{"version", "-o", "yaml"}, exitUsage},
		// Work tried that failed.
		run{[]string{"agent", "--node-name", "n1", "--root", dir}, exitFailed}, // no cluster to reach
		run{[]string{"node", "apply", "-f", empty, "--root", filepath.Join(empty, "not-a-directory"), "--hosts-file", ""}, exitFailed},
		// Work done.
		run{[]string{"version"}, 0},
		run{[]string{"completion", "bash"}, 0},
		run{[]string{"node", "apply", "-f", empty, "--root", filepath.Join(dir, "certs.d"), "--hosts-file", ""}, 0},
		run{[]string{"bootstrap", "render", "--state-dir", filepath.Join(dir, "state"), "--host", "nexus.local"}, 0},
	)
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(strings.Join(tc.args, " "), dir, "DIR"), func(t *testing.T) {
			out, err := execute(tc.args...)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d: %v\n%s", code, tc.code, err, out)
			}
		})
	}
}
