package registrymirror

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/regwire/regwire/internal/pullsecret"
)

// TestAnotherWritersPullSecretIsKept: between regwire's (cached) read of a ServiceAccount
// and its patch, another controller adds its own pull secret. The API server refuses
// regwire's patch for the stale read; regwire reads again and adds its entry to the list as
// it now is, so both entries stay.
func TestAnotherWritersPullSecretIsKept(t *testing.T) {
	t.Parallel()
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "default"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "existing"}}}
	store := fake.NewClientBuilder().WithScheme(s).WithObjects(sa).Build()
	stale := &corev1.ServiceAccount{}
	if err := store.Get(context.Background(), client.ObjectKeyFromObject(sa), stale); err != nil {
		t.Fatal(err)
	}
	var patches atomic.Int64
	c := interceptor.NewClient(store, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, o ...client.PatchOption) error {
			data, err := p.Data(obj)
			if err != nil {
				return err
			}
			if !strings.Contains(string(data), `"resourceVersion"`) {
				t.Errorf("a ServiceAccount patch without a resourceVersion to check, it would drop what others added: %s", data)
			}
			if patches.Add(1) == 1 { // another writer got there first
				other := &corev1.ServiceAccount{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), other); err != nil {
					return err
				}
				other.ImagePullSecrets = append(other.ImagePullSecrets, corev1.LocalObjectReference{Name: "other-controller"})
				if err := c.Update(ctx, other); err != nil {
					return err
				}
				return apierrors.NewConflict(schema.GroupResource{Resource: "serviceaccounts"}, obj.GetName(), nil)
			}
			return c.Patch(ctx, obj, p, o...)
		},
	})
	r := &Reconciler{Client: c, APIReader: c}
	err := r.patchServiceAccount(context.Background(), stale, func(sa *corev1.ServiceAccount) bool { return pullsecret.AddTo(sa, "nexus-pull") })
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.ServiceAccount{}
	if err := store.Get(context.Background(), client.ObjectKeyFromObject(sa), got); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"existing": true, "other-controller": true, "nexus-pull": true}
	for _, ref := range got.ImagePullSecrets {
		delete(want, ref.Name)
	}
	if len(want) != 0 || patches.Load() != 2 {
		t.Errorf("imagePullSecrets %v after %d patches: missing %v", got.ImagePullSecrets, patches.Load(), want)
	}
}
