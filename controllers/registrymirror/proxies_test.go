package registrymirror_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/nexusemulator"
	"github.com/regwire/regwire/internal/test/testutil"
)

// dockerHubProxy is a mirror of docker.io provisioning a proxy repository docker-hub with
// the upstream account of Secret account, joined with the hosted repository in docker-all.
func dockerHubProxy(t *testing.T, name, url, ca string, admin, account *corev1.Secret) *v1alpha1.RegistryMirror {
	t.Helper()
	return env.NewMirror(t, name, func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.CABundle = ca
		rm.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io"}}
		rm.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{
			URL: url, Repository: name + "-hosted",
			AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: admin.Name},
			Proxies: []v1alpha1.NexusProxy{{Upstream: "docker.io", Repository: name + "-hub",
				CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: account.Name}}},
			Group: &v1alpha1.NexusGroup{Repository: name + "-all"},
		}}
	})
}

func upstreamAccount(t *testing.T, name, password string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: name}, Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "hub-user", "password": password}}
	if err := env.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), s) })
	return s
}

// TestAMirrorOfDockerHubProvisionsAProxyAGroupAndAnonymousReadOfTheProxyOnly: on a Nexus
// whose anonymous access is off, the mirror creates the proxy (Docker Hub's API, its
// account) and the group, turns anonymous access on for the proxy only (the built-in
// nx-anonymous taken away, so the hosted repository stays private), publishes the proxy's
// path (path-based routing, as the hosted repository) for docker.io, sends a rotated password again, and takes its role back when
// deleted.
func TestAMirrorOfDockerHubProvisionsAProxyAGroupAndAnonymousReadOfTheProxyOnly(t *testing.T) {
	ctx := context.Background()
	fake, srv, ca := startNexus(t)
	admin := nexusAdmin(t, "proxy-admin")
	account := upstreamAccount(t, "hub-account", "hub-secret-1")
	rm := dockerHubProxy(t, "hub", srv.URL, ca.PEM, admin, account)

	_, c := env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryCreated)
	for _, want := range []string{"proxy hub-hub of docker.io (https://registry-1.docker.io)", "group hub-all", "anonymous read on the proxies only"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("Provisioned message %q lacks %q", c.Message, want)
		}
	}
	proxy := fake.Repository("hub-hub")
	if proxy == nil || proxy["type"] != "proxy" || proxy["proxy"].(map[string]any)["remoteUrl"] != "https://registry-1.docker.io" ||
		proxy["dockerProxy"].(map[string]any)["indexType"] != "HUB" || proxy["docker"].(map[string]any)["forceBasicAuth"] != false {
		t.Fatalf("proxy in Nexus: %v", proxy)
	}
	if user, pass := fake.UpstreamCredentials("hub-hub"); user != "hub-user" || pass != "hub-secret-1" {
		t.Errorf("upstream credentials %q/%q", user, pass)
	}
	if got := fake.Repository("hub-all")["group"].(map[string]any)["memberNames"]; !slices.Equal(toStrings(got), []string{"hub-hosted", "hub-hub"}) {
		t.Errorf("group members %v: the hosted repository first, then the proxy", got)
	}
	role := "regwire-hub-anonymous"
	if on, user := fake.Anonymous(); !on || user != "anonymous" || !slices.Contains(fake.Realms(), "DockerToken") {
		t.Errorf("anonymous access %v as %q, realms %v", on, user, fake.Realms())
	}
	if roles, _, _ := fake.UserRoles("anonymous"); !slices.Equal(roles, []string{role}) {
		t.Errorf("the anonymous user's roles %v, want only %s", roles, role)
	}
	if !fake.May("anonymous", "nexus:repository-view:docker:hub-hub:read") || fake.May("anonymous", "nexus:repository-view:docker:hub-hosted:read") ||
		fake.May("anonymous", "nexus:repository-view:docker:hub-all:read") {
		t.Error("anonymous users may read more, or less, than the proxy")
	}
	cm := &corev1.ConfigMap{}
	if err := env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: nodeconfig.PublishedName(rm.Name)}, cm); err != nil {
		t.Fatal(err)
	}
	if p, _, err := nodeconfig.FromConfigMap(cm); err != nil || len(p.Spec.MirrorOf) != 1 || p.Spec.MirrorOf[0].Path != "/v2/hub-hub" {
		t.Errorf("published mirrorOf %+v (%v): want docker.io through the proxy, by path-based routing", p.Spec.MirrorOf, err)
	}

	// A rotated upstream password reaches Nexus, which never shows it back.
	puts := countRequests(fake, "PUT /service/rest/v1/repositories/docker/proxy/hub-hub")
	env.Mutate(t, account, func() { account.StringData = map[string]string{"username": "hub-user", "password": "hub-secret-2"} })
	envtest.Eventually(t, func() error {
		if _, pass := fake.UpstreamCredentials("hub-hub"); pass != "hub-secret-2" {
			return errors.New("the proxy still holds the old password")
		}
		return nil
	})
	if got := countRequests(fake, "PUT /service/rest/v1/repositories/docker/proxy/hub-hub"); got != puts+1 {
		t.Errorf("%d updates of the proxy for one new password", got-puts)
	}

	// Deleted: the anonymous user loses the role, which goes; the repositories stay.
	env.DeleteAndWait(t, rm)
	if roles, _, _ := fake.UserRoles("anonymous"); slices.Contains(roles, role) {
		t.Errorf("the anonymous user still holds %s: %v", role, roles)
	}
	if _, _, ok := fake.Role(role); ok {
		t.Errorf("role %s is still in Nexus", role)
	}
	if fake.Repository("hub-hub") == nil {
		t.Error("the proxy and its cached images went with the mirror")
	}
}

// TestAnAnonymousUserThatReadsEverythingAlreadyIsReportedNotTakenAway: where anonymous
// access was on with the built-in nx-anonymous (every repository readable), regwire adds
// its role, leaves the administrator's choice, and says the hosted repository is readable
// anonymously.
func TestAnAnonymousUserThatReadsEverythingAlreadyIsReportedNotTakenAway(t *testing.T) {
	fake, srv, ca := startNexus(t)
	fake.AllowAnonymous(true)
	admin := nexusAdmin(t, "open-admin")
	account := upstreamAccount(t, "open-account", "pw")
	rm := dockerHubProxy(t, "open", srv.URL, ca.PEM, admin, account)
	_, c := env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonHostedReadableAnonymously)
	if !strings.Contains(c.Message, "open-hosted") || !strings.Contains(c.Message, "nx-anonymous (nx-repository-view-*-*-read)") {
		t.Errorf("message %q: want the hosted repository and the role that opens it", c.Message)
	}
	if roles, _, _ := fake.UserRoles("anonymous"); !slices.Equal(roles, []string{"nx-anonymous", "regwire-open-anonymous"}) {
		t.Errorf("the anonymous user's roles %v", roles)
	}
	envtest.Eventually(t, func() error { return env.HasEvent(rm, v1alpha1.ReasonHostedReadableAnonymously) })
}

// TestAnonymousAccessAsAnotherUserIsRefusedWithWhatToChange: the Docker Bearer Token
// realm gives anonymous tokens to the built-in user only (nexus-public#311).
func TestAnonymousAccessAsAnotherUserIsRefusedWithWhatToChange(t *testing.T) {
	fake, srv, ca := startNexus(t)
	fake.AddUser("guest", "guest-pw")
	admin := nexusAdmin(t, "guest-admin")
	account := upstreamAccount(t, "guest-account", "pw")
	restPut(t, srv.URL, ca, "/service/rest/v1/security/anonymous", `{"enabled":true,"userId":"guest","realmName":"NexusAuthorizingRealm"}`)
	rm := dockerHubProxy(t, "guest", srv.URL, ca.PEM, admin, account)
	_, c := env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionFalse, v1alpha1.ReasonAnonymousAccessUnusable)
	for _, want := range []string{`"guest"`, "nexus-public#311", "anonymousRead: None"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("message %q lacks %q", c.Message, want)
		}
	}
}

func countRequests(fake *nexusemulator.Server, want string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r == want {
			n++
		}
	}
	return n
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// restPut sends body to the emulator's REST path as its admin.
func restPut(t *testing.T, url string, ca *testutil.CA, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("admin", "admin-password")
	resp, err := (&http.Client{Transport: testutil.CATransport(t, ca.PEM)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("PUT %s: %s", path, resp.Status)
	}
}
