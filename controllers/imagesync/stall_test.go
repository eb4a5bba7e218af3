package imagesync_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestAStalledSourceStallsOnlyItsOwnImageSync: two ImageSyncs copy images sharing a base
// layer into one target registry; one source stops sending that layer halfway. The other
// ImageSync still reaches Ready (the manager's blob cache waits on the stalled transfer
// only while it moves), the stalled one reports a stalled source within the manager's
// stall timeout, and recovers on its next sync once its source answers again.
func TestAStalledSourceStallsOnlyItsOwnImageSync(t *testing.T) {
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	dst := testutil.StartRegistry(t, testutil.RegistryOptions{})
	base, err := random.Layer(2<<20, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushShared(t, src.Host+"/stuck/app", base, "1")
	testutil.PushShared(t, src.Host+"/fine/app", base, "1")
	digest, _ := base.Digest()

	var stalling atomic.Bool
	stalling.Store(true)
	front := testutil.StartHostile(t, src, func(h *testutil.Hostile, w http.ResponseWriter, r *http.Request) bool {
		if !stalling.Load() || !testutil.IsBlobGet(r, digest.String()) {
			return false
		}
		h.Stall(w, r, 2<<20)
		return true
	})

	stuck := newSync(t, "stalled-source", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(front.Host() + "/stuck/app"), Tags: []string{"1"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/stuck/app")}
	})
	select {
	case <-front.Stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the stalling source was never asked for the base layer")
	}
	start := time.Now()
	newSync(t, "beside-a-stall", func(is *v1alpha1.ImageSync) {
		is.Spec.Source = v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(src.Host + "/fine/app"), Tags: []string{"1"}}
		is.Spec.Target = v1alpha1.ImageTarget{Image: v1alpha1.ImageRepository(dst.Host + "/fine/app")}
	})
	syncReady(t, "beside-a-stall")
	t.Logf("the ImageSync sharing the stalled layer was Ready after %s", time.Since(start).Round(time.Millisecond))

	_, c := syncCondition(t, stuck.Name, v1alpha1.ConditionReady, v1alpha1.ReasonSourceUnreachable)
	if !strings.Contains(c.Message, "no progress") || !strings.Contains(c.Message, "(body)") {
		t.Errorf("the stalled ImageSync says %q, want the stalled source body named", c.Message)
	}

	// The source answers again; the next sync (here: a new generation) copies the image.
	stalling.Store(false)
	env.Mutate(t, stuck, func() { stuck.Spec.Interval = &metav1.Duration{Duration: 2 * time.Hour} })
	syncReady(t, stuck.Name)
}
