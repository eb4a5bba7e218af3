package imagesync_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
)

func newSync(t *testing.T, name string, mutate func(*v1alpha1.ImageSync)) *v1alpha1.ImageSync {
	t.Helper()
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: "127.0.0.1:1/library/busybox", Tags: []string{"1.36"}}, // nothing listens there
			Target: v1alpha1.ImageTarget{Image: "registry.example/busybox"},
		},
	}
	if mutate != nil {
		mutate(is)
	}
	if err := env.Create(context.Background(), is); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), is) })
	return is
}

// syncCondition waits until condition typ of ImageSync name is False with the given reason.
func syncCondition(t *testing.T, name, typ string, reason v1alpha1.ConditionReason) (*v1alpha1.ImageSync, metav1.Condition) {
	t.Helper()
	is := &v1alpha1.ImageSync{}
	var got metav1.Condition
	envtest.Eventually(t, func() error {
		if err := env.Get(context.Background(), client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: name}, is); err != nil {
			return err
		}
		if is.Status.ObservedGeneration != is.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", is.Status.ObservedGeneration, is.Generation)
		}
		c := apimeta.FindStatusCondition(is.Status.Conditions, typ)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(reason) {
			return fmt.Errorf("%s = %+v, want False/%s", typ, c, reason)
		}
		got = *c
		return nil
	})
	return is, got
}

func TestImageSyncSpecCheckedByTheController(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mutate  func(*v1alpha1.ImageSync)
		message string
	}{
		{"an invalid tag pattern is reported, naming the field",
			func(is *v1alpha1.ImageSync) { is.Spec.Source.TagPattern = "1.(36" },
			`spec.source.tagPattern "1.(36": not a valid RE2 regular expression`},
		{"an invalid semver range is reported, naming the field",
			func(is *v1alpha1.ImageSync) { is.Spec.Source.Semver = ">= one" },
			`spec.source.semver ">= one": not a valid semantic version range`},
		{"an invalid exclude is reported, naming the field",
			func(is *v1alpha1.ImageSync) { is.Spec.Source.Exclude = "rc(" },
			`spec.source.exclude "rc(": not a valid RE2 regular expression`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("bad-spec-%d", i)
			is := newSync(t, name, tc.mutate)
			_, c := syncCondition(t, name, v1alpha1.ConditionReady, v1alpha1.ReasonInvalidSpec)
			if !strings.Contains(c.Message, tc.message) {
				t.Errorf("Ready message %q does not contain %q", c.Message, tc.message)
			}
			envtest.Eventually(t, func() error { return env.HasEvent(is, v1alpha1.ReasonInvalidSpec) })
		})
	}
}

func TestImageSyncResolvesItsRegistryMirrorWhenItAppears(t *testing.T) {
	t.Parallel()
	newSync(t, "waits-for-mirror", func(is *v1alpha1.ImageSync) {
		is.Spec.Source.Image = "127.0.0.1:1/library/busybox" // nothing listens there
		is.Spec.Target = v1alpha1.ImageTarget{
			RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "late-mirror"},
			Repository:        "my-docker/busybox",
		}
	})
	_, c := syncCondition(t, "waits-for-mirror", v1alpha1.ConditionReady, v1alpha1.ReasonTargetNotFound)
	if !strings.Contains(c.Message, `spec.target.registryMirrorRef: RegistryMirror "late-mirror" not found`) {
		t.Errorf("message %q does not name the missing mirror", c.Message)
	}
	// Creating the mirror must bring the ImageSync back without any change to it.
	env.NewMirror(t, "late-mirror", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = "nexus.local:8443"
		rm.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{Repositories: []v1alpha1.RepositoryPattern{"my-docker/**"}} // every namespace
	})
	is, _ := syncCondition(t, "waits-for-mirror", v1alpha1.ConditionReady, v1alpha1.ReasonSourceUnreachable)
	if want := "nexus.local:8443/my-docker/busybox"; is.Status.TargetImage != want {
		t.Errorf("targetImage = %q, want %q", is.Status.TargetImage, want)
	}
}

func TestSuspendedImageSyncSaysSo(t *testing.T) {
	t.Parallel()
	newSync(t, "suspended", func(is *v1alpha1.ImageSync) { is.Spec.Suspend = true })
	is, _ := syncCondition(t, "suspended", v1alpha1.ConditionSynced, v1alpha1.ReasonSuspended)
	if is.Status.TargetImage != "registry.example/busybox" {
		t.Errorf("targetImage = %q, want the full target image", is.Status.TargetImage)
	}
}

func TestImageSyncCredentialProblemsHaveTheirOwnReason(t *testing.T) {
	t.Parallel()
	newSync(t, "missing-source-creds", func(is *v1alpha1.ImageSync) {
		is.Spec.Source.CredentialsSecretRef = &v1alpha1.LocalSecretReference{Name: "no-such-secret"}
	})
	_, c := syncCondition(t, "missing-source-creds", v1alpha1.ConditionReady, v1alpha1.ReasonCredentialsNotFound)
	if want := "spec.source.credentialsSecretRef: Secret default/no-such-secret not found"; !strings.Contains(c.Message, want) {
		t.Errorf("message %q does not say %q", c.Message, want)
	}
}
