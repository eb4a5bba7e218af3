package probe_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
	"github.com/regwire/regwire/internal/test/nexusemulator"
)

func tlsMirror(t *testing.T, h http.Handler) nodeconfig.Mirror {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return nodeconfig.Mirror{Name: "m", Spec: v1alpha1.RegistryMirrorSpec{Host: "mirror.local", Endpoint: srv.URL}, CA: ca}
}

// TestAnonymousPullRefused asks, as containerd and CRI-O do for an upstream's images,
// whether a mirror lets a client without credentials pull.
func TestAnonymousPullRefused(t *testing.T) {
	t.Parallel()
	nexus := func(forceBasic bool) http.Handler {
		nx := nexusemulator.New("pw")
		nx.AddDockerHosted(nexusemulator.DockerHosted{Name: "docker-proxy", ForceBasicAuth: forceBasic, PathEnabled: true})
		nx.ActivateRealm("DockerToken")
		return nx
	}
	anonymousTokens := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			_, _ = w.Write([]byte(`{"token":"anonymous"}`))
		case r.Header.Get("Authorization") == "Bearer anonymous":
			http.NotFound(w, r) // past authentication: the image does not exist
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="https://`+r.Host+`/token",service="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	open := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	cases := []struct {
		name     string
		handler  http.Handler
		upstream v1alpha1.UpstreamMirror
		want     string // "" or a part of the reason
	}{
		{"Nexus with Basic authentication refuses", nexus(true), v1alpha1.UpstreamMirror{Host: "docker.io", Path: "/v2/docker-proxy"}, "/v2/docker-proxy/library/regwire-anonymous-pull-probe/manifests/latest answers 401 Unauthorized (BASIC"},
		{"Nexus with bearer tokens refuses an anonymous token", nexus(false), v1alpha1.UpstreamMirror{Host: "docker.io", Path: "/v2/docker-proxy"}, "its token endpoint"},
		{"a registry handing out anonymous tokens lets the pull through", anonymousTokens, v1alpha1.UpstreamMirror{Host: "ghcr.io"}, ""},
		{"a registry without authentication lets the pull through", open, v1alpha1.UpstreamMirror{Host: "quay.io"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := probe.Prober{}.AnonymousPullRefused(context.Background(), tlsMirror(t, tc.handler), tc.upstream)
			switch {
			case tc.want == "" && got != "":
				t.Errorf("refused: %s; want the pull let through", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}
