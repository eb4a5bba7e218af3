package conditions

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
		reason v1alpha1.ConditionReason
	}{
		{"all true makes Ready true", map[string]metav1.ConditionStatus{"A": "True", "B": "True"}, metav1.ConditionTrue, v1alpha1.ReasonReconciled},
		{"the first condition that is not true decides", map[string]metav1.ConditionStatus{"A": "True", "B": "False"}, metav1.ConditionFalse, "B-reason"},
		{"unknown counts as not ready", map[string]metav1.ConditionStatus{"A": "Unknown", "B": "False"}, metav1.ConditionFalse, "A-reason"},
		{"a missing condition is pending", map[string]metav1.ConditionStatus{"A": "True"}, metav1.ConditionFalse, v1alpha1.ReasonPending},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conds []metav1.Condition
			for _, typ := range []string{"A", "B"} {
				if st, ok := tc.set[typ]; ok {
					Set(&conds, 3, typ, st, v1alpha1.ConditionReason(typ+"-reason"), typ+" says so")
				}
			}
			SetReadySummary(&conds, 3, "A", "B")
			r := apimeta.FindStatusCondition(conds, v1alpha1.ConditionReady)
			if r.Status != tc.status || r.Reason != string(tc.reason) || r.ObservedGeneration != 3 {
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
		if got := LowestRequeue(tc.a, tc.b).RequeueAfter; got != tc.want {
			t.Errorf("LowestRequeue(%v, %v) = %v, want %v", tc.a.RequeueAfter, tc.b.RequeueAfter, got, tc.want)
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
	if err := PatchStatus(ctx, c, before, is); err != nil || patches != 0 {
		t.Fatalf("unchanged status: %d patches, err %v", patches, err)
	}
	is.Status.TagsSummary = "1/1"
	if err := PatchStatus(ctx, c, before, is); err != nil || patches != 1 {
		t.Fatalf("changed status: %d patches, err %v", patches, err)
	}
}

func TestReportPutsAProblemInItsConditionAndRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		err     error
		wantErr bool
		want    time.Duration
		reason  string
	}{
		{"a reported problem sets the condition and is no error", Errorf(v1alpha1.ReasonInvalidSpec, "spec.x: bad"), false, 0, "InvalidSpec"},
		{"a wrapped reported problem is found", fmt.Errorf("phase: %w", Errorf(v1alpha1.ReasonCredentialsNotFound, "spec.y: gone").Retry(time.Minute)), false, time.Minute, "CredentialsNotFound"},
		{"any other error is returned as it is", errors.New("API server down"), true, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conds []metav1.Condition
			res, err := Report(&conds, 2, "X", ctrl.Result{RequeueAfter: time.Hour}, tc.err)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			c := apimeta.FindStatusCondition(conds, "X")
			if tc.reason == "" {
				if c != nil {
					t.Errorf("condition set for a plain error: %+v", c)
				}
				return
			}
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason || c.Message != tc.err.Error() && !strings.HasSuffix(tc.err.Error(), c.Message) {
				t.Errorf("condition = %+v, want False/%s", c, tc.reason)
			}
			if want := cmp.Or(tc.want, time.Hour); res.RequeueAfter != want {
				t.Errorf("RequeueAfter = %v, want %v", res.RequeueAfter, want)
			}
		})
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

func TestMessagesAreCutToWhatTheAPIServerTakes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "a short message is kept", in: "fine", n: 10, want: "fine"},
		{name: "a message of exactly the bound is kept", in: "0123456789", n: 10, want: "0123456789"},
		{name: "a long message is cut and says so", in: strings.Repeat("x", 40), n: 20, want: strings.Repeat("x", 20-len(cutMark)) + cutMark},
		{name: "a cut never splits a character", in: strings.Repeat("é", 20), n: 20, want: strings.Repeat("é", 5) + cutMark},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Cut(tc.in, tc.n)
			if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
				t.Errorf("Cut(%q, %d) = %q (%d bytes), want %q", tc.in, tc.n, got, len(got), tc.want)
			}
		})
	}
	var conds []metav1.Condition
	Set(&conds, 1, "Ready", metav1.ConditionFalse, v1alpha1.ReasonSyncFailed, strings.Repeat("403 body ", 10_000))
	if got := len(conds[0].Message); got > MaxMessage {
		t.Errorf("a condition message of %d bytes was set, the API server takes %d", got, MaxMessage)
	}
}
