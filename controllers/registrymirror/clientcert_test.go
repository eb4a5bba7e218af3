package registrymirror_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestAClientCertificateReachesTheNodeAndNothingElse gives a mirror a kubernetes.io/tls
// Secret: the node gets client.cert and a 0600 client.key next to the CA, and the key is
// in no ConfigMap, status, RegistryNode or Event. A key that does not match keeps the
// nodes on the last good pair; removing the reference removes the files and the copy.
func TestAClientCertificateReachesTheNodeAndNothingElse(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "client cert test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	endpoint := testutil.ChallengeServer(t, ca).URL
	labels := map[string]string{"client-cert-test": "true"}
	n := agenttest.Start(t, env.Config, env, "client-cert-node", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels})

	cert, key := ca.ClientPEM(t, "node client")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "nexus-client"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key}}
	if err := env.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "mtls"},
		Spec: v1alpha1.RegistryMirrorSpec{Host: "mtls.local", Endpoint: endpoint, CABundle: ca.PEM, NodeSelector: labels,
			ClientCertificateSecretRef: &v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: secret.Name}},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, rm) })
	env.WaitNodes(t, rm.Name, "1/1", 10*time.Second)

	keyFile := filepath.Join(n.Root, "mtls.local", nodeconfig.ClientKeyFile)
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("client.key has mode %o, want 600", fi.Mode().Perm())
	}
	if got, _ := os.ReadFile(keyFile); strings.TrimSpace(string(got)) != strings.TrimSpace(string(key)) {
		t.Error("client.key is not the Secret's key")
	}
	if toml, _ := os.ReadFile(filepath.Join(n.Root, "mtls.local", nodeconfig.HostsFile)); !strings.Contains(string(toml), "client = [['client.cert', 'client.key']]") {
		t.Errorf("hosts.toml does not point at the pair:\n%s", toml)
	}
	assertNoKeyAnywhere(t, key)

	// A key that is not the certificate's: the nodes keep the last good pair.
	_, otherKey := ca.ClientPEM(t, "someone else")
	secret.Data[corev1.TLSPrivateKeyKey] = otherKey
	if err := env.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "ClientCertificateReady False with ClientCertificateInvalid", func() error {
		got := &v1alpha1.RegistryMirror{}
		if err := env.Get(ctx, client.ObjectKeyFromObject(rm), got); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionClientCertificateReady)
		if c == nil || c.Reason != string(v1alpha1.ReasonClientCertificateInvalid) || !strings.Contains(c.Message, "private key does not match public key") {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	if got, _ := os.ReadFile(keyFile); strings.TrimSpace(string(got)) != strings.TrimSpace(string(key)) {
		t.Error("a bad key replaced the node's last good one")
	}
	assertNoKeyAnywhere(t, key, otherKey)

	// No client certificate any more: the files and the agents' copy go.
	latest := &v1alpha1.RegistryMirror{}
	if err := env.Get(ctx, client.ObjectKeyFromObject(rm), latest); err != nil {
		t.Fatal(err)
	}
	latest.Spec.ClientCertificateSecretRef = nil
	if err := env.Update(ctx, latest); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "client.key removed from the node", func() error {
		if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
			return fmt.Errorf("client.key: %w", err)
		}
		return nil
	})
	shared := &corev1.Secret{}
	name := nodeconfig.ClientCertificatesSecretFor(rm.Name)
	if err := env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: name}, shared); err != nil {
		t.Fatalf("the agents' Secret %s: %v", name, err)
	}
	if _, ok := shared.Data[rm.Name+".key"]; ok {
		t.Errorf("the agents' Secret %s still holds the mirror's key", name)
	}
}

// assertNoKeyAnywhere fails when any of keys (PEM), or its base64 body, appears in a
// ConfigMap, a RegistryMirror's or RegistryNode's status, or an Event.
func assertNoKeyAnywhere(t *testing.T, keys ...[]byte) {
	t.Helper()
	ctx := context.Background()
	var haystacks []string
	add := func(what string, v any) {
		b, _ := json.Marshal(v)
		haystacks = append(haystacks, what+": "+string(b))
	}
	cms := &corev1.ConfigMapList{}
	mirrors := &v1alpha1.RegistryMirrorList{}
	nodes := &v1alpha1.RegistryNodeList{}
	events := &eventsv1.EventList{}
	for _, l := range []client.ObjectList{cms, mirrors, nodes, events} {
		if err := env.List(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	add("ConfigMaps", cms.Items)
	for _, m := range mirrors.Items {
		add("RegistryMirror "+m.Name+" status", m.Status)
	}
	add("RegistryNodes", nodes.Items)
	add("Events", events.Items)
	for _, key := range keys {
		body := strings.Join(strings.Split(strings.TrimSpace(string(key)), "\n")[1:2], "")
		for _, h := range haystacks {
			for _, needle := range []string{body, base64.StdEncoding.EncodeToString(key)} {
				if needle != "" && strings.Contains(h, needle) {
					what, _, _ := strings.Cut(h, ":")
					t.Errorf("a client key appears in %s", what)
				}
			}
		}
	}
}
