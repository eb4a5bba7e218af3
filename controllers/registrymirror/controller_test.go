package registrymirror_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

func TestRegistryMirrorWithValidCAReportsExpiryAndPendingParts(t *testing.T) {
	t.Parallel()
	notAfter := time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	env.NewMirror(t, "valid-ca", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.CABundle = testutil.CAPEM(t, "valid", time.Now().Add(-time.Hour), notAfter)
	})
	rm, c := env.MirrorCondition(t, "valid-ca", v1alpha1.ConditionCAValid, metav1.ConditionTrue, v1alpha1.ReasonCAValid)
	if !strings.Contains(c.Message, "1 certificate(s)") {
		t.Errorf("CAValid message %q does not count the certificates", c.Message)
	}
	if rm.Status.CANotAfter == nil || !rm.Status.CANotAfter.Time.Equal(notAfter) {
		t.Errorf("caNotAfter = %v, want %v", rm.Status.CANotAfter, notAfter)
	}
	if !controllerutil.ContainsFinalizer(rm, v1alpha1.RegistryMirrorFinalizer) {
		t.Errorf("finalizer %s missing: %v", v1alpha1.RegistryMirrorFinalizer, rm.Finalizers)
	}
	// No Node exists in this API server: Ready must say so rather than claim success.
	ready := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != string(v1alpha1.ReasonNoNodesSelected) {
		t.Errorf("Ready = %+v, want False/NoNodesSelected", ready)
	}
	for _, typ := range []string{v1alpha1.ConditionPullSecretsReady, v1alpha1.ConditionProvisioned} {
		if c := apimeta.FindStatusCondition(rm.Status.Conditions, typ); c == nil || c.Reason != string(v1alpha1.ReasonNotRequested) {
			t.Errorf("%s = %+v, want reason NotRequested", typ, c)
		}
	}
}

func TestRegistryMirrorCAProblems(t *testing.T) {
	t.Parallel()
	now := time.Now()
	cases := []struct {
		name    string
		mutate  func(*v1alpha1.RegistryMirror)
		status  metav1.ConditionStatus
		reason  v1alpha1.ConditionReason
		message string
		event   v1alpha1.ConditionReason
	}{
		{
			name: "an expired CA is reported as expired",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CABundle = testutil.CAPEM(t, "old", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
			},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonCAExpired, message: `spec.caBundle: certificate "CN=old" expired`,
		},
		{
			name: "a CA expiring within 30 days is valid but warned about",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CABundle = testutil.CAPEM(t, "soon", now.Add(-time.Hour), now.Add(10*24*time.Hour))
			},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonCAExpiringSoon, message: "renew the CA", event: v1alpha1.ReasonCAExpiringSoon,
		},
		{
			name: "a mangled PEM block is reported as invalid, naming the field",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CABundle = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
			},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonCAInvalid, message: "spec.caBundle: PEM block 1",
		},
		{
			name: "a missing caFrom Secret is reported, naming it",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CAFrom = &v1alpha1.CASource{SecretKeyRef: &v1alpha1.KeySelector{Namespace: envtest.Namespace, Name: "no-such-ca", Key: "ca.crt"}}
			},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonCASourceNotFound, message: "spec.caFrom.secretKeyRef: Secret " + envtest.Namespace + "/no-such-ca not found",
		},
		{
			name: "a caFrom Secret outside the operator's namespace is refused, saying how to allow it",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CAFrom = &v1alpha1.CASource{SecretKeyRef: &v1alpha1.KeySelector{Namespace: "default", Name: "someone-elses", Key: "ca.crt"}}
			},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonSecretNamespaceNotAllowed,
			message: "spec.caFrom.secretKeyRef: regwire reads a RegistryMirror's Secrets only from " + envtest.Namespace + "; move the Secret there, or start the manager with --secret-namespaces=default",
		},
		{
			name: "a caFrom ConfigMap without the key is reported, naming the key",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CAFrom = &v1alpha1.CASource{ConfigMapKeyRef: &v1alpha1.KeySelector{Namespace: "default", Name: "ca-without-key", Key: "ca.crt"}}
			},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonCASourceNotFound, message: `has no key "ca.crt"`,
		},
		{
			name: "a CA read from a ConfigMap is valid",
			mutate: func(rm *v1alpha1.RegistryMirror) {
				rm.Spec.CAFrom = &v1alpha1.CASource{ConfigMapKeyRef: &v1alpha1.KeySelector{Namespace: "default", Name: "ca-with-key", Key: "ca.crt"}}
			},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonCAValid, message: "1 certificate(s)",
		},
		{
			name:   "insecureSkipVerify is flagged with a warning",
			mutate: func(rm *v1alpha1.RegistryMirror) { rm.Spec.InsecureSkipVerify = true },
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonInsecureSkipVerify, message: "set caBundle or caFrom", event: v1alpha1.ReasonInsecureSkipVerify,
		},
		{
			name:   "no CA at all means the system roots",
			mutate: func(*v1alpha1.RegistryMirror) {},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonSystemRoots, message: "system roots",
		},
	}
	ctx := context.Background()
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ca-without-key"}, Data: map[string]string{"other": "x"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ca-with-key"}, Data: map[string]string{"ca.crt": testutil.CAPEM(t, "cm", now.Add(-time.Hour), now.Add(24*365*time.Hour))}},
	} {
		if err := env.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("ca-case-%d", i)
			env.NewMirror(t, name, tc.mutate)
			rm, c := env.MirrorCondition(t, name, v1alpha1.ConditionCAValid, tc.status, tc.reason)
			if !strings.Contains(c.Message, tc.message) {
				t.Errorf("CAValid message %q does not contain %q", c.Message, tc.message)
			}
			if tc.status != metav1.ConditionTrue {
				ready := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionReady)
				if ready == nil || ready.Reason != string(tc.reason) {
					t.Errorf("Ready = %+v, want reason %s from CAValid", ready, tc.reason)
				}
			}
			if tc.event != "" {
				envtest.Eventually(t, func() error { return env.HasEvent(rm, tc.event) })
			}
		})
	}
}

func TestRegistryMirrorDeletionReleasesFinalizer(t *testing.T) {
	t.Parallel()
	rm := env.NewMirror(t, "deleted", nil)
	env.MirrorCondition(t, "deleted", v1alpha1.ConditionCAValid, metav1.ConditionTrue, v1alpha1.ReasonSystemRoots)
	env.DeleteAndWait(t, rm)
}
