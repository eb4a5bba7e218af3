package imagesync

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestAPruneRemovesOnlyWhatThisImageSyncWroteAndAStoppedPruneDeletesNothingMore copies five
// tags, then selects one: of the four left, the one another ImageSync also holds, the one
// someone else's tag points at and the one someone rewrote all stay; only the fourth goes.
// The manager stops after deleting it, before its record says so: the next run deletes
// nothing more and drops the deleted tag from the record.
func TestAPruneRemovesOnlyWhatThisImageSyncWroteAndAStoppedPruneDeletesNothingMore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	src, dst := reg.Host+"/src/app", reg.Host+"/m/app"
	tags := []string{"1.0", "1.1", "1.2", "1.3", "1.4"}
	for _, tag := range tags {
		testutil.PushImage(t, src+":"+tag, 256, 1)
	}
	key, uid := types.NamespacedName{Namespace: "team", Name: "app"}, types.UID("uid-app")
	var failUpdates atomic.Bool
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if failUpdates.Load() {
				return errors.New("the manager stopped")
			}
			return c.Update(ctx, obj, opts...)
		},
	}).Build()
	recs := records{reader: c, writer: c, namespace: "regwire-system"}
	sync := func(t *testing.T, selected []string, spec v1alpha1.PruneSpec) (*v1alpha1.PruneStatus, error) {
		t.Helper()
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src}, imagecopy.Endpoint{Repository: dst}, imagecopy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		results := eng.Sync(ctx, selected)
		st, _, err := pruneRun{records: recs, key: key, uid: uid, spec: spec, engine: eng, repository: dst, now: time.Now()}.run(ctx, selected, results)
		return st, err
	}
	present := func(t *testing.T) []string {
		t.Helper()
		var out []string
		for _, tag := range append(slices.Clone(tags), "theirs") {
			if _, err := remote.Head(testutil.Ref(t, dst+":"+tag)); err == nil {
				out = append(out, tag)
			}
		}
		return out
	}

	if st, err := sync(t, tags, v1alpha1.PruneSpec{}); err != nil || !equality.Semantic.DeepEqual(*st, v1alpha1.PruneStatus{}) {
		t.Fatalf("first sync: %+v %v", st, err)
	}
	// Another ImageSync wrote 1.1's image into the same repository; someone tags 1.2's
	// image as theirs; someone rewrites 1.3.
	h11, _ := remote.Head(testutil.Ref(t, dst+":1.1"))
	other := record{ImageSync: "team/other", UID: "uid-other", Repository: dst, Tags: map[string]ownedTag{"1.1": {Digest: h11.Digest.String(), At: time.Now()}}}
	data, _ := json.Marshal(other)
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "regwire-system", Name: recordName(types.NamespacedName{Namespace: "team", Name: "other"}),
		Labels: map[string]string{recordLabel: "true"}}, Data: map[string]string{recordKey: string(data)}}); err != nil {
		t.Fatal(err)
	}
	img12, err := remote.Image(testutil.Ref(t, dst+":1.2"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, _ := name.NewTag(dst + ":theirs")
	if err := remote.Tag(theirs, img12); err != nil {
		t.Fatal(err)
	}
	testutil.PushImage(t, dst+":1.3", 128, 1)

	// keepLast covers all four: nothing goes.
	if st, err := sync(t, []string{"1.0"}, v1alpha1.PruneSpec{KeepLast: 10}); err != nil || !equality.Semantic.DeepEqual(*st, v1alpha1.PruneStatus{Kept: 4}) {
		t.Errorf("keepLast 10: %+v %v", st, err)
	}
	// A dry run says what would go.
	if st, err := sync(t, []string{"1.0"}, v1alpha1.PruneSpec{DryRun: true}); err != nil || !slices.Equal(st.WouldRemove, []string{"1.4"}) || st.Removed != 0 {
		t.Errorf("dry run: %+v %v", st, err)
	}
	if got := present(t); len(got) != 6 {
		t.Fatalf("after keepLast and a dry run the target holds %v, want every tag", got)
	}

	// The manager stops after deleting, before the record is written again.
	failUpdates.Store(true)
	if _, err := sync(t, []string{"1.0"}, v1alpha1.PruneSpec{}); err == nil {
		t.Fatal("the stopped prune reported no error")
	}
	failUpdates.Store(false)
	if got, want := present(t), []string{"1.0", "1.1", "1.2", "1.3", "theirs"}; !slices.Equal(got, want) {
		t.Fatalf("after the stopped prune the target holds %v, want %v", got, want)
	}
	rec, _, err := recs.load(ctx, key, uid, dst)
	if err != nil || len(rec.Tags) != 5 {
		t.Fatalf("the record after the stopped prune: %v %v, want its five tags", rec.Tags, err)
	}

	// Started again: nothing more goes; the gone and the rewritten tag leave the record.
	st, err := sync(t, []string{"1.0"}, v1alpha1.PruneSpec{})
	if err != nil || !equality.Semantic.DeepEqual(*st, v1alpha1.PruneStatus{Kept: 3}) {
		t.Errorf("after the restart: %+v %v, want 3 kept (shared, another ImageSync's, rewritten)", st, err)
	}
	if got, want := present(t), []string{"1.0", "1.1", "1.2", "1.3", "theirs"}; !slices.Equal(got, want) {
		t.Errorf("after the restart the target holds %v, want %v", got, want)
	}
	rec, _, err = recs.load(ctx, key, uid, dst)
	var owned []string
	for tag := range rec.Tags {
		owned = append(owned, tag)
	}
	slices.Sort(owned)
	if err != nil || !slices.Equal(owned, []string{"1.0", "1.1", "1.2"}) {
		t.Errorf("the record after the restart holds %v (%v), want 1.0, 1.1, 1.2", owned, err)
	}
	// A new ImageSync of the same name owns nothing of the old one's.
	if fresh, _, _ := recs.load(ctx, key, "uid-new", dst); len(fresh.Tags) != 0 {
		t.Errorf("a new ImageSync of the same name inherits %v", fresh.Tags)
	}
}
