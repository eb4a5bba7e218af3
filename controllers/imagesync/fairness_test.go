package imagesync_test

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"sync/atomic"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestOneNamespaceCannotTakeEveryCopySlot: sixteen ImageSyncs of one namespace copy from a
// source that sends their layers slowly, never stalling and above the minimum rate. Half
// of the manager's sixteen slots go to them and no more; an ImageSync of another namespace
// then copies and becomes Ready while they are all still under way.
func TestOneNamespaceCannotTakeEveryCopySlot(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	const greedy = 16
	layers := map[string]bool{}
	for i := range greedy {
		layer, _ := testutil.FirstLayer(t, testutil.PushImage(t, fmt.Sprintf("%s/greedy/app-%d:1", src.Host, i), 4<<20, 1))
		layers[layer.String()] = true
	}
	testutil.PushImage(t, src.Host+"/other/app:1", 1024, 1)

	var inFlight, most atomic.Int64
	slow := testutil.StartHostile(t, src, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !layers[path.Base(r.URL.Path)] {
			return false
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		h.Forward(&testutil.SlowWriter{ResponseWriter: w, Piece: 32 << 10, Pause: 200 * time.Millisecond}, r) // 160 KiB/s
		return true
	})

	env.CreateNamespace(t, "greedy-tenant", nil)
	for i := range greedy {
		is := &v1alpha1.ImageSync{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i), Namespace: "greedy-tenant"},
			Spec: v1alpha1.ImageSyncSpec{
				Source: v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(fmt.Sprintf("%s/greedy/app-%d", slow.Host(), i)), Tags: []string{"1"}},
				Target: v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(fmt.Sprintf("%s/greedy/app-%d", dst.Host, i))},
			},
		}
		if err := env.Create(ctx, is); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Delete(context.Background(), is) })
	}
	deadline := time.Now().Add(30 * time.Second)
	for inFlight.Load() < 8 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := inFlight.Load(); got != 8 {
		t.Fatalf("%d layers of the greedy namespace in flight, want 8 (half of the 16 slots)", got)
	}
	time.Sleep(time.Second) // time for a ninth to start, if one could

	start := time.Now()
	newSync(t, "beside-a-greedy-tenant", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/other/app"), Tags: []string{"1"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/other/app")}
	})
	syncReady(t, "beside-a-greedy-tenant")
	t.Logf("another namespace's ImageSync was Ready after %s, with %d greedy copies under way (at most %d)",
		time.Since(start).Round(time.Millisecond), inFlight.Load(), most.Load())
	if got := most.Load(); got > 8 {
		t.Errorf("%d copies of one namespace ran at once, want at most 8", got)
	}
	syncing := 0
	list := &v1alpha1.ImageSyncList{}
	if err := env.List(ctx, list, client.InNamespace("greedy-tenant")); err != nil {
		t.Fatal(err)
	}
	for _, is := range list.Items {
		if c := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Reason == string(v1alpha1.ReasonSyncing) {
			syncing++
		}
	}
	if syncing != greedy {
		t.Errorf("%d of the greedy namespace's ImageSyncs still Syncing, want all %d (the test proves nothing if they ended)", syncing, greedy)
	}
}
