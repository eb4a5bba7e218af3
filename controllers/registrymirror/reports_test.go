package registrymirror

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/regwire/regwire/api/v1alpha1"
)

// TestABurstOfReportsIsOneReconcilePerMirror: 500 agents reporting within a moment on two
// mirrors make two queue entries, ready after reportBatch; a mirror a node dropped from its
// report (named only by the old report) is among them.
func TestABurstOfReportsIsOneReconcilePerMirror(t *testing.T) {
	t.Parallel()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	report := func(node string, mirrors ...string) *v1alpha1.RegistryNode {
		rn := &v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
		for _, m := range mirrors {
			rn.Status.Mirrors = append(rn.Status.Mirrors, v1alpha1.NodeMirrorStatus{Name: m})
		}
		return rn
	}
	h := reportsInBatches()
	start := time.Now()
	for i := range 500 {
		node := fmt.Sprintf("node-%d", i)
		h.Update(context.Background(), event.UpdateEvent{ObjectOld: report(node, "a", "gone"), ObjectNew: report(node, "a")}, q)
	}
	if q.Len() != 0 {
		t.Fatalf("%d reconciles queued at once, want them after %s", q.Len(), reportBatch)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		req, _ := q.Get()
		got[req.Name] = true
		q.Done(req)
	}
	if waited := time.Since(start); waited < reportBatch {
		t.Errorf("the first reconcile came after %s, want %s", waited, reportBatch)
	}
	if !got["a"] || !got["gone"] || q.Len() != 0 {
		t.Errorf("queued %v and %d more, want a and gone once each", got, q.Len())
	}
}
