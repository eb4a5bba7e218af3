package imagesync_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestAPrefixImageSyncCopiesEveryRepositoryBelowItThatTheMirrorLetsItWrite: a tenant's
// ImageSync copies every repository below registry/team into my-docker/team-p/apps; the
// mirror lets the namespace write my-docker/{namespace}/apps/* only, so the repository two
// levels below the prefix fails alone, named in status with the field to change, while
// the others are copied; status counts repositories and lists the failing one only.
func TestAPrefixImageSyncCopiesEveryRepositoryBelowItThatTheMirrorLetsItWrite(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	for _, repo := range []string{"team/api", "team/web", "team/tools/lint", "other/app"} {
		testutil.PushImage(t, src.Host+"/"+repo+":1.0", 512, 1)
		testutil.PushImage(t, src.Host+"/"+repo+":1.1-rc1", 512, 1)
	}
	env.NewMirror(t, "prefix-mirror", func(rm *v1alpha1.RegistryMirror) {
		rm.Spec.Host = v1alpha1.RegistryHost(dst.Host)
		rm.Spec.InsecureSkipVerify = true
		rm.Spec.ImageSyncs = &v1alpha1.ImageSyncPolicy{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"prefix": "true"}},
			Repositories:      []v1alpha1.RepositoryPattern{"my-docker/{namespace}/apps/*"},
		}
	})
	env.CreateNamespace(t, "team-p", map[string]string{"prefix": "true"})
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-p", Name: "team"},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/team"), Repositories: v1alpha1.RepositoryScopePrefix,
				TagPattern: ".*", Exclude: ".*-rc.*"},
			Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "prefix-mirror"}, Repository: "my-docker/team-p/apps"},
		},
	}
	if err := env.Create(ctx, is); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), is) })

	c := settledReady(t, is)
	if err := env.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
		t.Fatal(err)
	}
	if c.Reason != string(v1alpha1.ReasonTargetNotAllowed) || !strings.Contains(c.Message, "tools/lint") ||
		!strings.Contains(c.Message, "my-docker/team-p/apps/tools/lint is not one RegistryMirror prefix-mirror lets namespace team-p write") {
		t.Errorf("Ready = %s %q, want TargetNotAllowed naming my-docker/team-p/apps/tools/lint", c.Reason, c.Message)
	}
	if r := is.Status.Repositories; r == nil || *r != (v1alpha1.RepositoryCounts{Found: 3, Synced: 2, Failed: 1}) {
		t.Errorf("status.repositories = %+v, want 3 found, 2 synced, 1 failed", r)
	}
	if len(is.Status.Images) != 1 || is.Status.Images[0].Tag != "tools/lint" || is.Status.Images[0].Error == "" {
		t.Errorf("status.images = %+v, want the failing repository only", is.Status.Images)
	}
	if is.Status.TagsSummary != "2/3" || is.Status.TagsLeftOut == nil || is.Status.TagsLeftOut.Excluded != 2 {
		t.Errorf("tagsSummary %q, tagsLeftOut %+v: want 2/3 and 2 excluded", is.Status.TagsSummary, is.Status.TagsLeftOut)
	}
	for _, repo := range []string{"api", "web"} {
		s, err := remote.Head(testutil.Ref(t, src.Host+"/team/"+repo+":1.0"))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := remote.Head(testutil.Ref(t, dst.Host+"/my-docker/team-p/apps/"+repo+":1.0")); err != nil || d.Digest != s.Digest {
			t.Errorf("apps/%s:1.0 in the mirror: %v %v, want %s", repo, d, err, s.Digest)
		}
	}
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/my-docker/team-p/apps/tools/lint:1.0")); err == nil {
		t.Error("the repository the mirror does not allow was written")
	}
	if s := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionSynced); s == nil || s.Reason != c.Reason {
		t.Errorf("Synced = %+v", s)
	}
}

// TestAnImageSyncPrunesTheTagsItNoLongerSelectsAndNothingElse: with spec.prune, a tag
// dropped from the selection leaves the target (an Event says so, status counts it);
// a tag someone else pushed into the same repository stays.
func TestAnImageSyncPrunesTheTagsItNoLongerSelectsAndNothingElse(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	for _, tag := range []string{"1.0", "1.1"} {
		testutil.PushImage(t, src.Host+"/library/app:"+tag, 256, 1)
	}
	testutil.PushImage(t, dst.Host+"/pruned/app:theirs", 256, 1)
	is := newSync(t, "pruning", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/library/app"), Tags: []string{"1.0", "1.1"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/pruned/app"), Insecure: true}
		is.Spec.Prune = &v1alpha1.PruneSpec{}
	})
	syncReady(t, "pruning")
	if err := env.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
		t.Fatal(err)
	}
	is.Spec.Source.Tags = []string{"1.1"}
	if err := env.Update(ctx, is); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, func() error {
		if err := env.Get(ctx, client.ObjectKeyFromObject(is), is); err != nil {
			return err
		}
		if p := is.Status.Prune; is.Status.ObservedGeneration != is.Generation || p == nil || p.Removed != 1 {
			return fmt.Errorf("status.prune %+v at generation %d of %d", p, is.Status.ObservedGeneration, is.Generation)
		}
		return nil
	})
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/pruned/app:1.0")); err == nil {
		t.Error("1.0 is still in the target")
	}
	for _, tag := range []string{"1.1", "theirs"} {
		if _, err := remote.Head(testutil.Ref(t, dst.Host+"/pruned/app:"+tag)); err != nil {
			t.Errorf("%s is gone: %v", tag, err)
		}
	}
	envtest.Eventually(t, func() error {
		events := &eventsv1.EventList{}
		if err := env.List(ctx, events, client.InNamespace(is.Namespace)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Regarding.Name == is.Name && e.Reason == string(v1alpha1.ReasonPruned) && strings.Contains(e.Note, "removed 1 tag(s) it wrote and no longer selects: 1.0") {
				return nil
			}
		}
		return errors.New("no Pruned Event")
	})
}

// TestAnImageSyncWithVerifyCopiesOnlyTagsSignedByItsKeys: keys from a ConfigMap of the
// namespace; the signed tag and its signature are copied, the unsigned one is
// SignatureNotVerified naming it, and a key that is not there says which field.
func TestAnImageSyncWithVerifyCopiesOnlyTagsSignedByItsKeys(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	key := testutil.NewSigningKey(t)
	signed := testutil.PushImage(t, src.Host+"/library/app:signed", 512, 1)
	sd, _ := signed.Digest()
	key.CosignSign(t, src.Host+"/library/app", sd)
	testutil.PushImage(t, src.Host+"/library/app:unsigned", 512, 1)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "release-keys"}, Data: map[string]string{"cosign.pub": string(key.PublicPEM)}}
	if err := env.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(context.Background(), cm) })
	newSync(t, "verified", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/library/app"), TagPattern: ".*"}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/verified/app"), Insecure: true}
		is.Spec.Verify = &v1alpha1.VerifySpec{Keys: []v1alpha1.PublicKeySource{{ConfigMapKeyRef: &v1alpha1.LocalKeySelector{Name: "release-keys", Key: "cosign.pub"}}}}
	})
	is, c := syncCondition(t, "verified", v1alpha1.ConditionReady, v1alpha1.ReasonSignatureNotVerified)
	if !strings.Contains(c.Message, "1 of 2 tag(s) failed; unsigned: SignatureNotVerified: unsigned") {
		t.Errorf("Ready: %s", c.Message)
	}
	if is.Status.TagsSummary != "1/2" {
		t.Errorf("tagsSummary %q: the signature tag is not a tag to verify", is.Status.TagsSummary)
	}
	if got, err := remote.Head(testutil.Ref(t, dst.Host+"/verified/app:signed")); err != nil || got.Digest != sd {
		t.Errorf("the signed tag: %v %v", got, err)
	}
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/verified/app:sha256-"+sd.Hex+".sig")); err != nil {
		t.Errorf("its signature: %v", err)
	}
	if _, err := remote.Head(testutil.Ref(t, dst.Host+"/verified/app:unsigned")); err == nil {
		t.Error("the unsigned tag was copied")
	}

	newSync(t, "verified-no-key", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/library/app"), Tags: []string{"signed"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/verified/other"), Insecure: true}
		is.Spec.Verify = &v1alpha1.VerifySpec{Keys: []v1alpha1.PublicKeySource{{SecretKeyRef: &v1alpha1.LocalKeySelector{Name: "missing-keys", Key: "cosign.pub"}}}}
	})
	_, c = syncCondition(t, "verified-no-key", v1alpha1.ConditionReady, v1alpha1.ReasonVerifyKeyInvalid)
	if !strings.Contains(c.Message, "spec.verify.keys[0].secretKeyRef: Secret default/missing-keys not found") {
		t.Errorf("Ready: %s", c.Message)
	}
}
