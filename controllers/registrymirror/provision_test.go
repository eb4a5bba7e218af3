package registrymirror

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
)

// TestNexusIsReachedByTheMirrorsHostAliases: provisioning reaches Nexus by the names nodes
// use, hostAliases included, where DNS knows none of them.
func TestNexusIsReachedByTheMirrorsHostAliases(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	url := "http://nexus.regwire.invalid:" + port + "/service/rest/v1/status"
	for _, aliases := range [][]v1alpha1.HostAlias{nil, {{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.regwire.invalid"}}}} {
		hc, err := nexusHTTPClient(&mirrorScope{rm: &v1alpha1.RegistryMirror{Spec: v1alpha1.RegistryMirrorSpec{HostAliases: aliases}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(url)
		if err == nil {
			_ = resp.Body.Close()
		}
		if aliases == nil {
			if err == nil || !strings.Contains(err.Error(), "lookup nexus.regwire.invalid") {
				t.Errorf("without hostAliases: %v, want a failed lookup", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("with hostAliases: %v", err)
		}
	}
}
