package controllers

import (
	"context"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/regwire/regwire/api/v1alpha1"
)

func TestSetReadySummary(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		set    map[string]metav1.ConditionStatus
		status metav1.ConditionStatus
		reason string
	}{
		{"all true makes Ready true", map[string]metav1.ConditionStatus{"A": "True", "B": "True"}, metav1.ConditionTrue, v1alpha1.ReasonReconciled},
		{"the first condition that is not true decides", map[string]metav1.ConditionStatus{"A": "True", "B": "False"}, metav1.ConditionFalse, "B-reason"},
		{"unknown counts as not ready", map[string]metav1.ConditionStatus{"A": "Unknown", "B": "False"}, metav1.ConditionFalse, "A-reason"},
		{"a missing condition is pending", map[string]metav1.ConditionStatus{"A": "True"}, metav1.ConditionFalse, "Pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conds []metav1.Condition
			for _, typ := range []string{"A", "B"} {
				if st, ok := tc.set[typ]; ok {
					setCondition(&conds, 3, typ, st, typ+"-reason", typ+" says so")
				}
			}
			setReadySummary(&conds, 3, "A", "B")
			r := apimeta.FindStatusCondition(conds, v1alpha1.ConditionReady)
			if r.Status != tc.status || r.Reason != tc.reason || r.ObservedGeneration != 3 {
				t.Errorf("Ready = %+v, want %s/%s at generation 3", r, tc.status, tc.reason)
			}
		})
	}
}

func TestLowestRequeue(t *testing.T) {
	t.Parallel()
	r := func(d time.Duration) ctrl.Result { return ctrl.Result{RequeueAfter: d} }
	for _, tc := range []struct {
		a, b ctrl.Result
		want time.Duration
	}{
		{r(0), r(0), 0},
		{r(0), r(time.Minute), time.Minute},
		{r(time.Hour), r(0), time.Hour},
		{r(time.Hour), r(time.Minute), time.Minute},
		{r(time.Minute), r(time.Hour), time.Minute},
	} {
		if got := lowestRequeue(tc.a, tc.b).RequeueAfter; got != tc.want {
			t.Errorf("lowestRequeue(%v, %v) = %v, want %v", tc.a.RequeueAfter, tc.b.RequeueAfter, got, tc.want)
		}
	}
}

func TestNextCACheck(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct{ left, want time.Duration }{
		{365 * day, 335*day + time.Second}, // wake up when the 30-day warning starts
		{10 * day, 10*day + time.Second},   // then at expiry
	} {
		if got := nextCACheck(tc.left); got != tc.want {
			t.Errorf("nextCACheck(%v) = %v, want %v", tc.left, got, tc.want)
		}
	}
}

func TestPatchStatusSendsNothingWhenNothingChanged(t *testing.T) {
	t.Parallel()
	is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}}
	patches := 0
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(is).WithStatusSubresource(is).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, o ...client.SubResourcePatchOption) error {
			patches++
			return c.SubResource(sub).Patch(ctx, obj, p, o...)
		}}).Build()
	ctx := context.Background()
	before := is.DeepCopy()
	if err := patchStatus(ctx, c, before, is); err != nil || patches != 0 {
		t.Fatalf("unchanged status: %d patches, err %v", patches, err)
	}
	is.Status.TagsSummary = "1/1"
	if err := patchStatus(ctx, c, before, is); err != nil || patches != 1 {
		t.Fatalf("changed status: %d patches, err %v", patches, err)
	}
}

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}
