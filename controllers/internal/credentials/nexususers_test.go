package credentials_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/regwire/regwire/controllers/internal/credentials"
)

func TestNexusUserSecretNamesAreValidAndDistinct(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 200) + "." + strings.Repeat("b", 52) // 253 characters
	for _, tc := range []struct {
		name, mirror, want string
	}{
		{"a short name keeps the mirror's name", "nexus-local", "nexus-local-nexus-pull"},
		{"a long name is cut and hashed", long, ""},
		{"a cut never leaves a dot before the hash", strings.Repeat("a", 235) + "." + strings.Repeat("c", 17), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := credentials.NexusUserSecretName(tc.mirror, "pull")
			if tc.want != "" && got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("%q: %v", got, errs)
			}
			if push := credentials.NexusUserSecretName(tc.mirror, "push"); push == got {
				t.Errorf("pull and push share %q", got)
			}
		})
	}
	if a, b := credentials.NexusUserSecretName(long, "pull"), credentials.NexusUserSecretName(long[:252]+"c", "pull"); a == b {
		t.Errorf("two long names share %q", a)
	}
}
