package registrymirror_test

import (
	"context"
	"encoding/json"
	"fmt"
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
)

// pullSecretName is spec.pullSecrets.secretName in the lifecycle test.
const pullSecretName = "pulls-pull"

func createServiceAccount(t *testing.T, ns, name string, pullSecrets ...string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range pullSecrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
	}
	if err := env.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
}

// pullSecretState is what one namespace holds: the pull secret's username, and each
// ServiceAccount's imagePullSecrets.
func pullSecretState(ns, secret string, sas ...string) string {
	ctx := context.Background()
	out := ""
	s := &corev1.Secret{}
	switch err := env.Get(ctx, client.ObjectKey{Namespace: ns, Name: secret}, s); {
	case apierrors.IsNotFound(err):
		out += "no secret"
	case err != nil:
		out += err.Error()
	default:
		var cfg struct {
			Auths map[string]struct{ Username string } `json:"auths"`
		}
		_ = json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg)
		out += fmt.Sprintf("%s user=%s", s.Type, cfg.Auths["pulls.local"].Username)
	}
	for _, name := range sas {
		sa := &corev1.ServiceAccount{}
		if err := env.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sa); err != nil {
			out += "; " + name + ": " + err.Error()
			continue
		}
		var refs []string
		for _, r := range sa.ImagePullSecrets {
			refs = append(refs, r.Name)
		}
		out += fmt.Sprintf("; %s=%v", name, refs)
	}
	return out
}

// settle waits until obj has not changed for a second: no reconcile of it is under way.
func settle(t *testing.T, obj client.Object) {
	t.Helper()
	last, since := "", time.Now()
	envtest.Eventually(t, func() error {
		if err := env.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		if rv := obj.GetResourceVersion(); rv != last {
			last, since = rv, time.Now()
		}
		if time.Since(since) < time.Second {
			return fmt.Errorf("%s still changing", obj.GetName())
		}
		return nil
	})
}

func expectState(t *testing.T, ns, want string, sas ...string) {
	t.Helper()
	envtest.Eventually(t, func() error {
		if got := pullSecretState(ns, pullSecretName, sas...); got != want {
			return fmt.Errorf("namespace %s: %q, want %q", ns, got, want)
		}
		return nil
	})
}

// TestPullSecretLifecycle covers namespaces that match now and later, rotation of the
// source Secret, ServiceAccounts that keep their other pull secrets, a namespace that
// stops matching, and deletion of the mirror.
func TestPullSecretLifecycle(t *testing.T) {
	ctx := context.Background()
	creds := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "pulls-creds"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "alice", "password": "first-password"},
	}
	if err := env.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"pulls": "yes"}
	env.CreateNamespace(t, "team-a", labels)
	createServiceAccount(t, "team-a", "default", "theirs")
	createServiceAccount(t, "team-a", "builder")
	env.CreateNamespace(t, "team-off", nil)
	createServiceAccount(t, "team-off", "default")

	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "pulls"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host:                 "pulls.local",
			CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: creds.Name},
			PullSecrets: &v1alpha1.PullSecretsSpec{
				SecretName:        "pulls-pull",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels},
				ServiceAccounts:   []string{"default"},
			},
		},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	dockerType := string(corev1.SecretTypeDockerConfigJson)
	expectState(t, "team-a", dockerType+" user=alice; default=[theirs pulls-pull]; builder=[]", "default", "builder")
	expectState(t, "team-off", "no secret; default=[]", "default")
	rmNow, _ := env.MirrorCondition(t, "pulls", v1alpha1.ConditionPullSecretsReady, metav1.ConditionTrue, "PullSecretsReady")
	if rmNow.Status.PullSecrets == nil || rmNow.Status.PullSecrets.Namespaces != 1 {
		t.Errorf("status.pullSecrets = %+v, want 1 namespace", rmNow.Status.PullSecrets)
	}

	// A namespace created later, with a ServiceAccount created after it, gets both.
	env.CreateNamespace(t, "team-late", labels)
	createServiceAccount(t, "team-late", "default")
	expectState(t, "team-late", dockerType+" user=alice; default=[pulls-pull]", "default")

	// Rotating the credentials updates every pull secret. Let the mirror settle first, so
	// that only the watch on its credentials Secret can explain the update.
	settle(t, rm)
	env.Mutate(t, creds, func() {
		creds.Data = map[string][]byte{"username": []byte("bob"), "password": []byte("second-password")}
	})
	expectState(t, "team-a", dockerType+" user=bob; default=[theirs pulls-pull]", "default")
	expectState(t, "team-late", dockerType+" user=bob; default=[pulls-pull]", "default")

	// Widening serviceAccounts to "*" adds builder; narrowing back takes it out again.
	env.Mutate(t, rm, func() {
		rm.Spec.PullSecrets.ServiceAccounts = []string{"*"}
	})
	expectState(t, "team-a", dockerType+" user=bob; default=[theirs pulls-pull]; builder=[pulls-pull]", "default", "builder")
	env.Mutate(t, rm, func() {
		rm.Spec.PullSecrets.ServiceAccounts = []string{"default"}
	})
	expectState(t, "team-a", dockerType+" user=bob; default=[theirs pulls-pull]; builder=[]", "default", "builder")

	// A namespace that stops matching loses the Secret and the reference.
	ns := &corev1.Namespace{}
	if err := env.Get(ctx, client.ObjectKey{Name: "team-late"}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = nil
	if err := env.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	expectState(t, "team-late", "no secret; default=[]", "default")

	// A Secret of the same name that regwire did not make is never overwritten. It exists
	// before the namespace matches (else the controller could be first).
	env.CreateNamespace(t, "team-clash", nil)
	clash := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-clash", Name: "pulls-pull"}, StringData: map[string]string{"mine": "yes"}}
	if err := env.Create(ctx, clash); err != nil {
		t.Fatal(err)
	}
	clashNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-clash"}}
	env.Mutate(t, clashNS, func() { clashNS.Labels = labels })
	_, c := env.MirrorCondition(t, "pulls", v1alpha1.ConditionPullSecretsReady, metav1.ConditionFalse, "PullSecretsFailing")
	if want := "team-clash: a Secret named pulls-pull exists and is not managed by regwire"; !strings.Contains(c.Message, want) {
		t.Errorf("PullSecretsReady message %q does not contain %q", c.Message, want)
	}
	if err := env.Delete(ctx, clash); err != nil {
		t.Fatal(err)
	}

	// Deleting the mirror removes every pull secret and reference it made, nothing else.
	env.DeleteAndWait(t, rm)
	expectState(t, "team-a", "no secret; default=[theirs]; builder=[]", "default", "builder")
	expectState(t, "team-clash", "no secret")
}

func TestPullSecretsReportCredentialProblems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opaque := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: envtest.Namespace, Name: "opaque-creds"},
		StringData: map[string]string{"password": "hunter2-hunter2"},
	}
	if err := env.Create(ctx, opaque); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, secret string
		reason       v1alpha1.ConditionReason
		message      string
	}{
		{"missing-creds", "no-such-secret", "CredentialsNotFound", "spec.credentialsSecretRef: Secret regwire-system/no-such-secret not found"},
		{"opaque-creds", "opaque-creds", "CredentialsInvalid", "use kubernetes.io/basic-auth or kubernetes.io/dockerconfigjson"},
	} {
		env.NewMirror(t, tc.name, func(rm *v1alpha1.RegistryMirror) {
			rm.Spec.CredentialsSecretRef = &v1alpha1.SecretReference{Namespace: envtest.Namespace, Name: tc.secret}
			rm.Spec.PullSecrets = &v1alpha1.PullSecretsSpec{SecretName: "x", NamespaceSelector: &metav1.LabelSelector{}}
		})
		rm, c := env.MirrorCondition(t, tc.name, v1alpha1.ConditionPullSecretsReady, metav1.ConditionFalse, tc.reason)
		if !strings.Contains(c.Message, tc.message) {
			t.Errorf("%s: message %q does not contain %q", tc.name, c.Message, tc.message)
		}
		for _, cond := range rm.Status.Conditions {
			if strings.Contains(cond.Message, "hunter2") {
				t.Errorf("condition %s leaks the password: %s", cond.Type, cond.Message)
			}
		}
		if r := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionFalse {
			t.Errorf("Ready = %+v, want False", r)
		}
	}
}
