package pullsecret_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/internal/pullsecret"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestPullSecretAuthenticatesAsKubeletWould pulls from a real registry with basic auth
// using only the pull secret Build makes, read by go-containerregistry's Kubernetes
// keychain, which resolves imagePullSecrets the way kubelet does.
func TestPullSecretAuthenticatesAsKubeletWould(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Users: map[string]string{"alice": password}})
	ref, err := name.ParseReference(reg.Host+"/my-docker/busybox:1.36", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "alice", Password: password})); err != nil {
		t.Fatalf("seeding the registry: %v\n%s", err, reg.Log)
	}
	want, _ := img.Digest()

	pull := func(src *corev1.Secret) error {
		data, err := pullsecret.Build(reg.Host, src, "spec.credentialsSecretRef")
		if err != nil {
			t.Fatal(err)
		}
		ps := corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "nexus-pull"},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
		}
		kc, err := kauth.NewFromPullSecrets(ctx, []corev1.Secret{ps})
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
		if err != nil {
			return err
		}
		if d, _ := got.Digest(); d != want {
			t.Errorf("pulled %s, want %s", d, want)
		}
		return nil
	}

	if err := pull(secret(corev1.SecretTypeBasicAuth, map[string]string{"username": "alice", "password": password})); err != nil {
		t.Fatalf("the pull secret did not authenticate: %v", err)
	}
	err = pull(secret(corev1.SecretTypeBasicAuth, map[string]string{"username": "alice", "password": "wrong-password"}))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong password pulled anyway or failed oddly: %v", err)
	}
}
