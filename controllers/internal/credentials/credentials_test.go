package credentials

import (
	"errors"
	"strings"
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
)

func TestAMirrorsSecretsAreReadOnlyWhereTheManagerAllows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		scope Scope
		ns    string
		want  string // "" when allowed
	}{
		{name: "the operator's namespace is allowed", scope: Scope{"regwire-system"}, ns: "regwire-system"},
		{name: "a namespace --secret-namespaces adds is allowed", scope: Scope{"regwire-system", "registry-creds"}, ns: "registry-creds"},
		{name: "any other namespace is refused, naming the flag", scope: Scope{"regwire-system", "registry-creds"}, ns: "team-a",
			want: "spec.credentialsSecretRef: regwire reads a RegistryMirror's Secrets only from regwire-system, registry-creds; move the Secret there, or start the manager with --secret-namespaces=team-a"},
		{name: "an empty scope allows nothing", scope: nil, ns: "regwire-system", want: "only from the operator's namespace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.scope.Check("spec.credentialsSecretRef", tc.ns)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *conditions.Error
			if !errors.As(err, &e) || e.Reason != v1alpha1.ReasonSecretNamespaceNotAllowed || !e.Stalled || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %v, want a stalled SecretNamespaceNotAllowed saying %q", err, tc.want)
			}
		})
	}
}
