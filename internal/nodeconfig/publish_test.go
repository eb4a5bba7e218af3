package nodeconfig_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
)

func TestPublishKeepsOnlyWhatNodesNeed(t *testing.T) {
	t.Parallel()
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "nexus", Generation: 4, CreationTimestamp: metav1.NewTime(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: "nexus.local", Endpoint: "https://nexus.local", CABundle: "inline PEM",
			CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: "ns", Name: "creds"},
			PullSecrets:          &v1alpha1.PullSecretsSpec{SecretName: "pull"},
			NodeSelector:         map[string]string{"pool": "a"},
			MirrorOf:             []v1alpha1.UpstreamMirror{{Host: "docker.io"}}, SkipFallback: true,
			Runtimes:                   []v1alpha1.ContainerRuntime{v1alpha1.RuntimeCRIO},
			FallbackEndpoints:          []v1alpha1.EndpointURL{"https://nexus-b.local"},
			ClientCertificateSecretRef: &v1alpha1.SecretReference{Namespace: "ns", Name: "client"},
		},
	}
	p := nodeconfig.Publish(rm, []byte("resolved PEM"), "digest")
	got, err := nodeconfig.Decode(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "nexus" || got.Generation != 4 || !got.Created.Equal(rm.CreationTimestamp.Time) || got.CADigest != nodeconfig.CADigest([]byte("resolved PEM")) {
		t.Errorf("round trip lost data: %+v", got)
	}
	if got.CA != "" || strings.Contains(p.Encode(), "resolved PEM") {
		t.Errorf("the CA itself was published with the mirror, not referred to by digest: %s", p.Encode())
	}
	if err := got.ResolveCA(nil); err == nil || !strings.Contains(err.Error(), nodeconfig.CABundleName(got.CADigest)) {
		t.Errorf("ResolveCA without the bundle = %v, want an error naming its ConfigMap", err)
	}
	bundle := nodeconfig.CABundleConfigMap("regwire-system", []byte("resolved PEM"))
	forged := nodeconfig.CABundleConfigMap("regwire-system", []byte("resolved PEM"))
	forged.Name = nodeconfig.CABundleName(nodeconfig.CADigest([]byte("another PEM")))
	if b := nodeconfig.CABundles([]corev1.ConfigMap{*forged}); len(b) != 0 {
		t.Errorf("a bundle whose content does not match its name was taken: %v", b)
	}
	if err := got.ResolveCA(nodeconfig.CABundles([]corev1.ConfigMap{*bundle})); err != nil || got.CA != "resolved PEM" || !*bundle.Immutable {
		t.Errorf("ResolveCA = %v, CA %q (immutable bundle: %t)", err, got.CA, *bundle.Immutable)
	}
	if got.Spec.CredentialsSecretRef != nil || got.Spec.PullSecrets != nil || got.Spec.CABundle != "" || got.Spec.ClientCertificateSecretRef != nil {
		t.Errorf("published more than nodes need: %+v", got.Spec)
	}
	if got.Spec.Host != "nexus.local" || got.Spec.NodeSelector["pool"] != "a" || !got.Spec.SkipFallback || len(got.Spec.Runtimes) != 1 || len(got.Spec.FallbackEndpoints) != 1 || got.ClientCertificate != "digest" {
		t.Errorf("published spec lacks node fields: %+v", got.Spec)
	}
	if _, err := nodeconfig.Decode(`{"generation":1}`); err == nil {
		t.Error("a published mirror without a name was accepted")
	}
}

func TestSelects(t *testing.T) {
	t.Parallel()
	node := func(labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	controlPlane := corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}
	cases := []struct {
		name string
		spec v1alpha1.RegistryMirrorSpec
		node *corev1.Node
		want bool
	}{
		{"an empty selector selects an untainted node", v1alpha1.RegistryMirrorSpec{}, node(nil), true},
		{"a matching selector selects", v1alpha1.RegistryMirrorSpec{NodeSelector: map[string]string{"pool": "a"}}, node(map[string]string{"pool": "a", "x": "y"}), true},
		{"a selector on another pool does not select", v1alpha1.RegistryMirrorSpec{NodeSelector: map[string]string{"pool": "a"}}, node(map[string]string{"pool": "b"}), false},
		{"a NoSchedule taint without a toleration excludes the node", v1alpha1.RegistryMirrorSpec{}, node(nil, controlPlane), false},
		{"a toleration for the taint includes the node", v1alpha1.RegistryMirrorSpec{Tolerations: []corev1.Toleration{{Key: controlPlane.Key, Operator: corev1.TolerationOpExists}}}, node(nil, controlPlane), true},
		{"a new node that is not ready yet is selected", v1alpha1.RegistryMirrorSpec{}, node(nil, corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}), true},
		{"an unreachable node is still selected", v1alpha1.RegistryMirrorSpec{}, node(nil, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}), true},
		{"a PreferNoSchedule taint does not exclude", v1alpha1.RegistryMirrorSpec{}, node(nil, corev1.Taint{Key: "k", Effect: corev1.TaintEffectPreferNoSchedule}), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := nodeconfig.Selects(tc.spec, tc.node); got != tc.want {
				t.Errorf("Selects = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClientCertificatesSpreadOverTheirSecrets(t *testing.T) {
	t.Parallel()
	all := nodeconfig.ClientCertificatesSecrets()
	per := map[string]int{}
	for i := range 320 {
		name := nodeconfig.ClientCertificatesSecretFor(fmt.Sprintf("mirror-%d", i))
		if !slices.Contains(all, name) {
			t.Fatalf("mirror-%d's Secret %s is not one the agents may read (%v)", i, name, all)
		}
		per[name]++
	}
	// A pair is some 3-6 KiB: at 320 mirrors one Secret would hold ~1.5 MiB, past the
	// API server's 1 MiB; spread, none holds more than a few dozen.
	for name, n := range per {
		if n > 40 {
			t.Errorf("%s holds %d of 320 mirrors' pairs: %v", name, n, per)
		}
	}
	if len(per) != nodeconfig.ClientCertificateShards {
		t.Errorf("320 mirrors fell into %d of %d Secrets", len(per), nodeconfig.ClientCertificateShards)
	}
}

func TestTheReportWindowGrowsWithTheNodesAndShrinksOnlyWellBelowAStep(t *testing.T) {
	t.Parallel()
	const s = time.Second
	for _, tc := range []struct {
		name    string
		nodes   int
		rate    float64
		current time.Duration
		want    time.Duration
	}{
		{"a few hundred nodes are left to the agents' own spread", 500, 100, 0, 0},
		{"one more node than the agents' spread holds gets the first step", 501, 100, 0, 10 * s},
		{"5,000 nodes at 100 a second report over 50 s", 5000, 100, 0, 50 * s},
		{"one node more grows the window at once", 5001, 100, 50 * s, 60 * s},
		{"one node fewer does not shrink it", 5000, 100, 60 * s, 60 * s},
		{"nodes that fit just under 80% of the step below keep the window", 4000, 100, 60 * s, 60 * s},
		{"nodes clearly fewer than the step below holds shrink it", 3900, 100, 60 * s, 40 * s},
		{"a fleet that shrank a lot falls to the window it needs", 1200, 100, 60 * s, 20 * s},
		{"a small fleet goes back to the agents' spread only well below it", 450, 100, 10 * s, 10 * s},
		{"and does below 80% of it", 399, 100, 10 * s, 0},
		{"a higher rate needs a smaller window", 5000, 500, 0, 10 * s},
		{"the window is bounded", 1_000_000, 100, 0, nodeconfig.MaxReportWindow},
		{"no rate publishes nothing", 5000, 0, 50 * s, 0},
		{"no nodes publish nothing", 0, 100, 50 * s, 0},
		{"a window published out of step is taken as the step below it", 5000, 100, 55 * s, 50 * s},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := nodeconfig.ReportWindow(tc.nodes, tc.rate, tc.current); got != tc.want {
				t.Errorf("ReportWindow(%d, %g, %s) = %s, want %s", tc.nodes, tc.rate, tc.current, got, tc.want)
			}
		})
	}
}

func TestAnUpstreamServedByAProvisionedProxyIsPulledThroughIt(t *testing.T) {
	t.Parallel()
	spec := v1alpha1.RegistryMirrorSpec{
		Host: "nexus.local", Endpoint: "https://nexus.local",
		MirrorOf: []v1alpha1.UpstreamMirror{{Host: "docker.io"}, {Host: "ghcr.io", Path: "/v2/ghcr-by-hand"}, {Host: "quay.io"}},
		Provision: &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{Repository: "my-docker", Proxies: []v1alpha1.NexusProxy{
			{Upstream: "docker.io", Repository: "docker-hub"}, {Upstream: "ghcr.io", Repository: "ghcr"},
		}}},
	}
	got := nodeconfig.Publish(&v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "nexus"}, Spec: spec}, nil, "").Spec.MirrorOf
	want := []v1alpha1.UpstreamMirror{
		{Host: "docker.io", Path: "/v2/docker-hub"}, // path-based routing, as the endpoint
		{Host: "ghcr.io", Path: "/v2/ghcr-by-hand"}, // a path of its own stays
		{Host: "quay.io"}, // no proxy: the endpoint as it is
	}
	if !slices.Equal(got, want) {
		t.Errorf("published mirrorOf %+v, want %+v", got, want)
	}
	if spec.MirrorOf[0].Path != "" {
		t.Error("the spec itself was changed")
	}
	// An endpoint at a repository's base path: the proxies' base paths too.
	spec.Endpoint = "https://nexus.local/repository/my-docker/v2"
	if got := nodeconfig.ProxiedMirrorOf(spec)[0].Path; got != "/repository/docker-hub/v2" {
		t.Errorf("behind a base path endpoint: %s, want /repository/docker-hub/v2", got)
	}
}
