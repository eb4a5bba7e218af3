package registrymirror_test

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
)

// TestProvisioningCreatesTheNexusRepository is a contract test: the controller provisions
// against nexusemulator (a strict fake of Sonatype's REST API; Nexus cannot run here) served
// over TLS from the mirror's own CA. It creates the docker (hosted) repository with
// path-based routing and the Docker Bearer Token realm, sends nothing more on later
// reconciles, follows a spec change, and names the reason when the credentials are wrong.
func TestProvisioningCreatesTheNexusRepository(t *testing.T) {
	ctx := context.Background()
	fake, srv, ca := startNexus(t)
	admin := nexusAdmin(t, "nexus-admin")
	rm := env.NewMirror(t, "provisioned", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.CABundle = ca.PEM
		rm.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{
			URL: srv.URL, Repository: "my-docker",
			AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: admin.Name},
		}}
	})
	_, c := env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryCreated)
	if !strings.Contains(c.Message, "my-docker") {
		t.Errorf("message %q", c.Message)
	}
	repo := fake.Repository("my-docker")
	if repo == nil || repo["docker"].(map[string]any)["pathEnabled"] != true || repo["storage"].(map[string]any)["writePolicy"] != "ALLOW" ||
		repo["storage"].(map[string]any)["blobStoreName"] != "default" {
		t.Fatalf("repository in Nexus: %v", repo)
	}
	if slices.Contains(fake.Realms(), "DockerToken") || repo["docker"].(map[string]any)["forceBasicAuth"] != true {
		t.Errorf("realms %v, docker %v: Basic authentication needs no DockerToken realm", fake.Realms(), repo["docker"])
	}

	// A reconcile that changes nothing sends Nexus nothing.
	sent := len(fake.Requests())
	reconciles := envtest.ReconcileCount(t, "registrymirror")
	env.Mutate(t, rm, func() { rm.Annotations = map[string]string{"poke": "1"} })
	envtest.WaitForReconcile(t, "registrymirror", reconciles)
	time.Sleep(200 * time.Millisecond) // a request under way would arrive now
	if got := fake.Requests()[sent:]; len(got) != 0 {
		t.Errorf("an unchanged mirror sent Nexus %v", got)
	}

	// A new write policy is a new generation: the repository follows.
	env.Mutate(t, rm, func() { rm.Spec.Provision.Nexus.WritePolicy = v1alpha1.WritePolicyAllowOnce })
	env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryUpdated)
	if got := fake.Repository("my-docker")["storage"].(map[string]any)["writePolicy"]; got != "ALLOW_ONCE" {
		t.Errorf("write policy in Nexus %v", got)
	}

	// Bearer tokens: forceBasicAuth off and the DockerToken realm active.
	env.Mutate(t, rm, func() { rm.Spec.Provision.Nexus.DockerAuth = v1alpha1.NexusDockerAuthToken })
	_, c = env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryUpdated)
	if got := fake.Repository("my-docker")["docker"].(map[string]any)["forceBasicAuth"]; got != false || !slices.Contains(fake.Realms(), "DockerToken") {
		t.Errorf("dockerAuth Token: forceBasicAuth %v, realms %v", got, fake.Realms())
	}
	if !strings.Contains(c.Message, "bearer tokens") {
		t.Errorf("message %q", c.Message)
	}

	// Wrong credentials: the reason says so, and the Ready summary follows.
	env.Mutate(t, admin, func() { admin.StringData = map[string]string{"password": "wrong"} })
	env.Mutate(t, rm, func() { rm.Spec.Provision.Nexus.WritePolicy = v1alpha1.WritePolicyAllow })
	_, c = env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionFalse, v1alpha1.ReasonNexusAuthFailed)
	if !strings.Contains(c.Message, "HTTP 401") || strings.Contains(c.Message, "wrong") {
		t.Errorf("message %q: want the status, never the password", c.Message)
	}
	got := &v1alpha1.RegistryMirror{}
	if err := env.Get(ctx, client.ObjectKeyFromObject(rm), got); err != nil {
		t.Fatal(err)
	}
	for _, cond := range got.Status.Conditions {
		if cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
			t.Errorf("Ready is True while provisioning fails: %+v", cond)
		}
	}

	// A Nexus before 3.83.0 has no path-based routing: a clear failure, never Provisioned.
	env.Mutate(t, admin, func() { admin.StringData = map[string]string{"password": "admin-password"} })
	fake.SetVersion("3.80.0")
	env.Mutate(t, rm, func() { rm.Spec.Provision.Nexus.WritePolicy = v1alpha1.WritePolicyAllowOnce })
	_, c = env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionFalse, v1alpha1.ReasonPathRoutingUnsupported)
	for _, want := range []string{"Nexus 3.80.0", "3.83.0", "/repository/my-docker/v2"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}

	// The alternative the message names works on that Nexus: nodes at the repository's
	// base path need no path-based routing.
	env.Mutate(t, rm, func() { rm.Spec.Endpoint = srv.URL + "/repository/my-docker/v2" })
	_, c = env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryUpToDate)
	if !strings.Contains(c.Message, "repository base path") {
		t.Errorf("message %q", c.Message)
	}
}

func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
