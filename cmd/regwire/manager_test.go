//go:build !lean

package main

import (
	"strings"
	"testing"
)

// TestAgentSchedulingFlagsReplaceTheDefaults: the manager's --agent-tolerations and
// --agent-resources (JSON, as the Helm chart writes them) replace the defaults rather
// than merge into them, and bad JSON is refused with what was wanted.
func TestAgentSchedulingFlagsReplaceTheDefaults(t *testing.T) {
	t.Parallel()
	cmd := newManagerCommand()
	if err := cmd.Flags().Parse([]string{
		`--agent-tolerations=[{"key":"gpu","operator":"Exists"}]`, `--agent-resources={"limits":{"memory":"256Mi"}}`,
		"--agent-node-selector=kubernetes.io/os=linux", "--agent-priority-class=high",
	}); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"agent-tolerations":    `[{"key":"gpu","operator":"Exists"}]`,
		"agent-resources":      `{"limits":{"memory":"256Mi"}}`, // the default's requests are gone
		"agent-node-selector":  "[kubernetes.io/os=linux]",
		"agent-priority-class": "high",
	} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s: %s, want %s", flag, got, want)
		}
	}
	for _, bad := range []string{`--agent-tolerations={"key":"gpu"}`, `--agent-resources={"limitz":{}}`, `--agent-resources=256Mi`} {
		if err := newManagerCommand().Flags().Parse([]string{bad}); err == nil || !strings.Contains(err.Error(), "want JSON") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
