package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTheOperatorBuildLinksNoLaptopTools: the container image's binary (built with the
// operator tag) must not link the laptop's tools — the embedded control plane (envtest,
// whose init needs a writable cache dir), kind, kustomize, Compose, the Nexus stand-in, or
// anything else of internal/test — nor net/http/httptest; the laptop CLI keeps bootstrap.
func TestTheOperatorBuildLinksNoLaptopTools(t *testing.T) {
	t.Parallel()
	deps := func(tags string) []string {
		out, err := exec.Command("go", "list", "-deps", "-tags", tags, ".").Output()
		if err != nil {
			t.Fatalf("go list -deps -tags %q: %v", tags, err)
		}
		return strings.Fields(string(out))
	}
	forbidden := []string{"controller-runtime/pkg/envtest", "sigs.k8s.io/kind/", "sigs.k8s.io/kustomize/", "compose-spec/compose-go",
		"net/http/httptest", "regwire/bootstrap", "regwire/internal/test/"}
	operator := deps("operator")
	for _, p := range operator {
		for _, f := range forbidden {
			if strings.Contains(p, f) {
				t.Errorf("the operator build links %s", p)
			}
		}
	}
	laptop := deps("")
	if !strings.Contains(strings.Join(laptop, " "), "regwire/bootstrap/local") {
		t.Error("the laptop CLI lost bootstrap")
	}
	t.Logf("operator build: %d packages; laptop CLI: %d", len(operator), len(laptop))
}
