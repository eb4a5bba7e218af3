package registrymirror_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/nexusemulator"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestProvisionedUsersServePullsAndPushesWithLeastPrivilege: a mirror that provisions Nexus
// and names no credentialsSecretRef gets a pull user that may only read the repository and
// a push user that may also write it. Pull secrets carry the pull user, an ImageSync
// pushes as the push user (the admin writes nothing to the repository), and deleting a
// user's Secret gives Nexus and the pull secrets a new password.
func TestProvisionedUsersServePullsAndPushesWithLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	fake, srv, ca := startNexus(t)
	host := strings.TrimPrefix(srv.URL, "https://")
	admin := nexusAdmin(t, "least-privilege-admin")
	env.CreateNamespace(t, "least-privilege-apps", map[string]string{"least-privilege": "true"})
	rm := env.NewMirror(t, "least-privilege", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = v1alpha1.RegistryHost(host)
		rm.Spec.CABundle = ca.PEM
		rm.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "nexus-pull",
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"least-privilege": "true"}}}
		rm.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{
			URL: srv.URL, Repository: "my-docker",
			AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: admin.Name},
		}}
	})
	_, c := env.MirrorCondition(t, rm.Name, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryCreated)
	const pullUser, pushUser = "regwire-least-privilege-pull", "regwire-least-privilege-push"
	if !strings.Contains(c.Message, pullUser+" (read)") || !strings.Contains(c.Message, pushUser+" (read, add, edit)") {
		t.Errorf("Provisioned message %q does not name the users", c.Message)
	}

	// Each user holds its own role, and each role only its repository's privileges.
	for user, want := range map[string][]string{
		pullUser: {"nx-repository-view-docker-my-docker-browse", "nx-repository-view-docker-my-docker-read"},
		pushUser: {"nx-repository-view-docker-my-docker-add", "nx-repository-view-docker-my-docker-browse", "nx-repository-view-docker-my-docker-edit", "nx-repository-view-docker-my-docker-read"},
	} {
		privileges, roles, ok := fake.Role(user)
		slices.Sort(privileges)
		if !ok || !slices.Equal(privileges, want) || len(roles) != 0 {
			t.Errorf("role %s: %v %v %v, want privileges %v", user, ok, privileges, roles, want)
		}
		if roles, status, ok := fake.UserRoles(user); !ok || status != "active" || !slices.Equal(roles, []string{user}) {
			t.Errorf("user %s: %v %q %v", user, ok, status, roles)
		}
	}
	if !fake.May(pullUser, "nexus:repository-view:docker:my-docker:read") || fake.May(pullUser, "nexus:repository-view:docker:my-docker:add") ||
		!fake.May(pushUser, "nexus:repository-view:docker:my-docker:add") || fake.May(pushUser, "nexus:repository-view:docker:other:read") ||
		fake.May(pushUser, "nexus:roles:read") {
		t.Error("the users hold more, or less, than their repository's privileges")
	}

	// The pull secret carries the pull user and its password; the admin's appears nowhere.
	pullSecretAuth := func() (string, string, error) {
		s := &corev1.Secret{}
		if err := env.Get(ctx, client.ObjectKey{Namespace: "least-privilege-apps", Name: "nexus-pull"}, s); err != nil {
			return "", "", err
		}
		var cfg struct {
			Auths map[string]struct{ Auth string } `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return "", "", err
		}
		b, err := base64.StdEncoding.DecodeString(cfg.Auths[host].Auth)
		if err != nil {
			return "", "", err
		}
		user, pass, _ := strings.Cut(string(b), ":")
		return user, pass, nil
	}
	first := fake.Password(pullUser)
	envtest.Eventually(t, func() error {
		user, pass, err := pullSecretAuth()
		if err != nil {
			return err
		}
		if user != pullUser || pass != first || pass == "admin-password" {
			return fmt.Errorf("pull secret holds %s (password matches Nexus: %v)", user, pass == first)
		}
		return nil
	})

	// An ImageSync into the mirror pushes as the push user.
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushImage(t, src.Host+"/library/app:1", 1024, 1)
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "least-privilege"},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/library/app"), Tags: []string{"1"}},
			Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/app"},
		},
	}
	if err := env.Create(ctx, is); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Delete(ctx, is) }()
	envtest.Eventually(t, func() error {
		if err := env.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
			return err
		}
		if c := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ImageSync Ready = %+v", c)
		}
		return nil
	})
	if got := fake.Writers("my-docker"); !slices.Equal(got, []string{pushUser}) {
		t.Errorf("my-docker was written by %v, want the push user only", got)
	}

	// Deleting the pull user's Secret rotates its password, in Nexus and in the pull secret.
	if err := env.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "least-privilege-nexus-pull"}}); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, func() error {
		now := fake.Password(pullUser)
		if now == first {
			return fmt.Errorf("Nexus still has the first password")
		}
		if _, pass, err := pullSecretAuth(); err != nil || pass != now {
			return fmt.Errorf("pull secret not rotated yet (%w)", err)
		}
		return nil
	})

	// Deleting the mirror takes its users, roles and Secrets away; the repository stays.
	env.DeleteAndWait(t, rm)
	for _, user := range []string{pullUser, pushUser} {
		if _, _, ok := fake.UserRoles(user); ok {
			t.Errorf("user %s stays in Nexus", user)
		}
		if _, _, ok := fake.Role(user); ok {
			t.Errorf("role %s stays in Nexus", user)
		}
	}
	for _, name := range []string{"least-privilege-nexus-pull", "least-privilege-nexus-push"} {
		if err := env.Get(ctx, client.ObjectKey{Namespace: envtest.Namespace, Name: name}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("Secret %s: %v, want it gone", name, err)
		}
	}
	if fake.Repository("my-docker") == nil {
		t.Error("the repository went with the mirror")
	}
}

// TestAForeignSecretWhereAUsersPasswordGoesIsAConflict: regwire never takes over a Secret
// it did not make; the mirror says which Secret is in the way.
func TestAForeignSecretWhereAUsersPasswordGoesIsAConflict(t *testing.T) {
	ctx := context.Background()
	fake, srv, ca := startNexus(t)
	admin := nexusAdmin(t, "squatted-admin")
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "squatted-nexus-pull"},
		StringData: map[string]string{"username": "someone", "password": "their-password"}}
	if err := env.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Delete(ctx, foreign) }()
	env.NewMirror(t, "squatted", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.CABundle = ca.PEM
		rm.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: srv.URL, Repository: "squatted",
			AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: admin.Name}}}
	})
	_, c := env.MirrorCondition(t, "squatted", v1alpha1.ConditionProvisioned, metav1.ConditionFalse, v1alpha1.ReasonUserSecretConflict)
	if !strings.Contains(c.Message, envtest.Namespace+"/squatted-nexus-pull") {
		t.Errorf("message %q does not name the Secret", c.Message)
	}
	got := &corev1.Secret{}
	if err := env.Get(ctx, client.ObjectKeyFromObject(foreign), got); err != nil || string(got.Data["password"]) != "their-password" {
		t.Errorf("the foreign Secret changed: %v", err)
	}
	if _, _, ok := fake.UserRoles("regwire-squatted-pull"); ok {
		t.Error("a user was made with a password regwire does not hold")
	}

	// A Secret a former mirror of the same name left (deleted before the garbage collector
	// came) is no conflict: the new mirror takes it over with a password of its own.
	former := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "reborn-nexus-pull",
		Labels: map[string]string{"regwire.dev/nexus-user": "pull"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RegistryMirror", Name: "reborn",
			UID: "5f1e0d3c-0000-4000-8000-000000000000", Controller: new(true)}}},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "regwire-reborn-pull", "password": "the-former-mirrors-password"}}
	if err := env.Create(ctx, former); err != nil {
		t.Fatal(err)
	}
	reborn := env.NewMirror(t, "reborn", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.CABundle = ca.PEM
		rm.Spec.Provision = &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: srv.URL, Repository: "reborn",
			AdminCredentialsSecretRef: v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: admin.Name}}}
	})
	env.MirrorCondition(t, "reborn", v1alpha1.ConditionProvisioned, metav1.ConditionTrue, v1alpha1.ReasonRepositoryCreated)
	if err := env.Get(ctx, client.ObjectKeyFromObject(former), got); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(got); ref == nil || ref.UID != reborn.UID || string(got.Data["password"]) == "the-former-mirrors-password" ||
		fake.Password("regwire-reborn-pull") != string(got.Data["password"]) {
		t.Errorf("the former mirror's Secret was not taken over: controller %v", ref)
	}
}

// startNexus serves a Nexus emulator over TLS from a CA of its own, on 127.0.0.1.
func startNexus(t *testing.T) (*nexusemulator.Server, *httptest.Server, *testutil.CA) {
	t.Helper()
	ca := testutil.NewCA(t, "nexus CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	fake := nexusemulator.New("admin-password")
	srv := httptest.NewUnstartedServer(fake)
	srv.TLS = tlsConfig(ca.ServerTLS(t, "127.0.0.1"))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return fake, srv, ca
}

// nexusAdmin creates the basic-auth Secret of the emulator's admin in the operator's namespace.
func nexusAdmin(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	admin := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: name},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "admin", "password": "admin-password"},
	}
	if err := env.Create(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), admin) })
	return admin
}
