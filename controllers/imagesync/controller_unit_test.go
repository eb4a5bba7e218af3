package imagesync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
)

// unitSync builds an Reconciler on a fake client whose direct reads (Secrets,
// ConfigMaps) are counted.
func unitSync(t *testing.T, is *v1alpha1.ImageSync) (*Reconciler, *int) {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(is).WithStatusSubresource(is).Build()
	reads := 0
	reader := interceptor.NewClient(fake.NewClientBuilder().WithScheme(s).Build(), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, o ...client.GetOption) error {
			reads++
			return c.Get(ctx, key, obj, o...)
		},
	})
	return &Reconciler{Client: c, APIReader: reader, Recorder: events.NewFakeRecorder(16), Clock: clock.RealClock{}, Namespace: "default", runner: startedRunner(t, 1, 0)}, &reads
}

func TestMissingCredentialsAreRetriedWithoutAWatch(t *testing.T) {
	t.Parallel()
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: "127.0.0.1:1/a", Tags: []string{"1"}, CredentialsSecretRef: &v1alpha1.LocalSecretReference{Name: "absent"}},
			Target: v1alpha1.ImageTarget{Image: "127.0.0.1:1/b"},
		},
	}
	r, _ := unitSync(t, is)
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(is)})
	if err != nil || res.RequeueAfter != credentialRetry {
		t.Fatalf("Reconcile = %+v, %v; want a retry after %s (Secrets are not watched)", res, err, credentialRetry)
	}
	got := &v1alpha1.ImageSync{}
	_ = r.Client.Get(context.Background(), client.ObjectKeyFromObject(is), got)
	if c := apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Reason != string(v1alpha1.ReasonCredentialsNotFound) {
		t.Errorf("Ready = %+v, want CredentialsNotFound", c)
	}
}

func TestAReconcileThatIsNotDueReadsNoSecret(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	next := metav1.NewTime(now.Add(time.Hour))
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: "127.0.0.1:1/a", Tags: []string{"1"}, CredentialsSecretRef: &v1alpha1.LocalSecretReference{Name: "src"}},
			Target: v1alpha1.ImageTarget{Image: "127.0.0.1:1/b", CredentialsSecretRef: &v1alpha1.LocalSecretReference{Name: "dst"}},
		},
		Status: v1alpha1.ImageSyncStatus{
			ObservedGeneration: 1, LastSyncTime: &now, NextSyncTime: &next, TargetImage: "127.0.0.1:1/b",
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionSynced, Status: metav1.ConditionTrue, Reason: string(v1alpha1.ReasonSyncSucceeded), ObservedGeneration: 1, LastTransitionTime: now},
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: string(v1alpha1.ReasonSyncSucceeded), ObservedGeneration: 1, LastTransitionTime: now},
			},
		},
	}
	r, reads := unitSync(t, is)
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(is)})
	if err != nil || res.RequeueAfter <= 0 || res.RequeueAfter > time.Hour {
		t.Fatalf("Reconcile = %+v, %v; want a requeue at nextSyncTime", res, err)
	}
	if *reads != 0 {
		t.Errorf("a reconcile with no copy due read %d Secrets", *reads)
	}
}

func TestTheTargetIsTheMirrorsEndpointWithItsPath(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, endpoint, repository, wantRepo, wantPrefix string
	}{
		{"no endpoint means the host itself", "", "my-docker/app", "nexus.local/my-docker/app", ""},
		{"an endpoint without a path gives its host", "https://10.0.0.5:8443", "my-docker/app", "10.0.0.5:8443/my-docker/app", ""},
		// The base path names the Nexus repository: images there do not.
		{"an endpoint path is where the registry API lives (a Nexus repository base path)", "https://nexus.local/repository/my-docker/v2/", "app", "nexus.local/app", "/repository/my-docker/v2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "nexus"}, Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: tc.endpoint}}
			is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1},
				Spec: v1alpha1.ImageSyncSpec{Source: v1alpha1.ImageSource{Image: "docker.io/library/app", Tags: []string{"1"}}, Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "nexus"}, Repository: tc.repository}}}
			r, _ := unitSync(t, is)
			if err := r.Client.Create(context.Background(), rm); err != nil {
				t.Fatal(err)
			}
			sc := &syncScope{is: is}
			if err := r.reconcilePlan(context.Background(), sc); err != nil {
				t.Fatal(err)
			}
			if dst := sc.plan.Target; dst.Repository != tc.wantRepo || dst.PathPrefix != tc.wantPrefix {
				t.Errorf("target %q under %q, want %q under %q", dst.Repository, dst.PathPrefix, tc.wantRepo, tc.wantPrefix)
			}
			if is.Status.TargetImage != "nexus.local/"+tc.repository {
				t.Errorf("status.targetImage %q: nodes pull by the mirror's host", is.Status.TargetImage)
			}
		})
	}
}

func TestClassifyNamesTheSideThatFailedAndWhetherOnlyAPersonCanFixIt(t *testing.T) {
	t.Parallel()
	stall := &registryhttp.StallError{Phase: "body", URL: "http://src/v2/a/blobs/sha256:1", After: time.Minute}
	cases := []struct {
		name    string
		err     error
		want    v1alpha1.ConditionReason
		stalled bool
	}{
		{"a source refusing credentials", &imagecopy.SideError{Side: "source", StatusCode: http.StatusForbidden}, v1alpha1.ReasonSourceAuthFailed, true},
		{"a source lacking the blob", fmt.Errorf("copying: %w", &imagecopy.SideError{Side: "source", StatusCode: http.StatusNotFound}), v1alpha1.ReasonSourceNotFound, false},
		{"a source that stalled", &imagecopy.SideError{Side: "source", Err: stall}, v1alpha1.ReasonSourceUnreachable, false},
		{"a target refusing credentials", &imagecopy.SideError{Side: "target", StatusCode: http.StatusUnauthorized}, v1alpha1.ReasonTargetAuthFailed, true},
		{"a target that stalled", &imagecopy.SideError{Side: "target", Err: stall}, v1alpha1.ReasonTargetUnreachable, false},
		{"a target refusing a manifest", &imagecopy.SideError{Side: "target", StatusCode: http.StatusBadRequest}, v1alpha1.ReasonSyncFailed, false},
		{"an error of no side", errors.New("boom"), v1alpha1.ReasonSyncFailed, false},
		{"a source whose pull limit is at the floor", &imagecopy.SideError{Side: "source", Err: &registryhttp.RateLimitError{Registry: "index.docker.io", Remaining: 2, Floor: 2}},
			v1alpha1.ReasonSourceRateLimited, false},
		{"a repository of a prefix the mirror does not allow", fmt.Errorf("m/x: %w", &conditions.Error{Reason: v1alpha1.ReasonTargetNotAllowed, Stalled: true}),
			v1alpha1.ReasonTargetNotAllowed, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, stalled := classify(tc.err); got != tc.want || stalled != tc.stalled {
				t.Errorf("classify(%v) = %s, stalled %t; want %s, stalled %t", tc.err, got, stalled, tc.want, tc.stalled)
			}
		})
	}
}

func TestCopiesWaitForTheMirrorToProvisionItsRepository(t *testing.T) {
	t.Parallel()
	provision := &v1alpha1.ProvisionSpec{Nexus: &v1alpha1.NexusProvision{URL: "https://nexus.local", Repository: "my-docker"}}
	cases := []struct {
		name       string
		provision  *v1alpha1.ProvisionSpec
		conditions []metav1.Condition
		wantWait   string // "" when the plan goes ahead
	}{
		{"a mirror that provisions nothing is ready at once", nil, nil, ""},
		{"a mirror that has not reported yet is waited for", provision, nil, "Provisioned: not yet reported"},
		{"a mirror that failed to provision names why", provision,
			[]metav1.Condition{{Type: v1alpha1.ConditionProvisioned, Status: metav1.ConditionFalse, Reason: string(v1alpha1.ReasonPathRoutingUnsupported), Message: "Nexus 3.80.0 ..."}},
			"Provisioned: PathRoutingUnsupported: Nexus 3.80.0"},
		{"a provisioned mirror is ready", provision,
			[]metav1.Condition{{Type: v1alpha1.ConditionProvisioned, Status: metav1.ConditionTrue, Reason: string(v1alpha1.ReasonRepositoryCreated)}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rm := &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "nexus"}, Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Provision: tc.provision},
				Status: v1alpha1.RegistryMirrorStatus{Conditions: tc.conditions}}
			is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1},
				Spec: v1alpha1.ImageSyncSpec{Source: v1alpha1.ImageSource{Image: "docker.io/library/app", Tags: []string{"1"}}, Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: "nexus"}, Repository: "my-docker/app"}}}
			r, _ := unitSync(t, is)
			if err := r.Client.Create(context.Background(), rm); err != nil {
				t.Fatal(err)
			}
			err := r.reconcilePlan(context.Background(), &syncScope{is: is})
			if tc.wantWait == "" {
				if err != nil {
					t.Fatalf("plan: %v", err)
				}
				return
			}
			e, ok := conditions.Reported(err)
			if !ok || e.Reason != v1alpha1.ReasonTargetNotProvisioned || !strings.Contains(e.Message, tc.wantWait) || !strings.Contains(e.Message, "my-docker") {
				t.Fatalf("plan: %v, want %s naming %q", err, v1alpha1.ReasonTargetNotProvisioned, tc.wantWait)
			}
		})
	}
}

func TestFailedCopiesAreRetriedSoonerThanTheInterval(t *testing.T) {
	t.Parallel()
	r := &Reconciler{}
	key := types.NamespacedName{Namespace: "default", Name: "x"}
	var got []time.Duration
	for range 8 {
		got = append(got, r.retryAfterFailure(key, 1, time.Hour))
	}
	want := []time.Duration{15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("retries after consecutive failures %v, want %v", got, want)
	}
	if d := r.retryAfterFailure(types.NamespacedName{Name: "short"}, 1, 5*time.Second); d != 5*time.Second {
		t.Errorf("with a 5s interval the retry is %s, want the interval", d)
	}
	if d := r.retryAfterFailure(key, 2, time.Hour); d != 15*time.Second {
		t.Errorf("the first failure of a new generation is retried after %s, want 15s", d)
	}
}

// TestARunOutlivesAStatusPatchThatFails: a finished run whose status patch the API server
// refuses stays with the runner. The next reconcile records it (counting the failure once)
// instead of losing its results and starting the copy again at once.
func TestARunOutlivesAStatusPatchThatFails(t *testing.T) {
	t.Parallel()
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: "127.0.0.1:1/a", Tags: []string{"1"}}, // nothing listens there: the run fails fast
			Target: v1alpha1.ImageTarget{Image: "127.0.0.1:1/b"},
		},
	}
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	var patches atomic.Int64
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(s).WithObjects(is).WithStatusSubresource(is).Build(), interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, o ...client.SubResourcePatchOption) error {
			patches.Add(1)
			if refuse.Load() {
				return errors.New("the API server refused the status")
			}
			return c.SubResource(sub).Patch(ctx, obj, p, o...)
		},
	})
	r := &Reconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(16), Clock: clock.RealClock{}, runner: startedRunner(t, 1, 0)}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(is)}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.runner.events: // the run ended
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not end")
	}

	refuse.Store(true)
	before := patches.Load()
	if _, err := r.Reconcile(context.Background(), req); err == nil || patches.Load() == before {
		t.Fatalf("Reconcile = %v with %d patches, want the refused patch as its error", err, patches.Load()-before)
	}
	if r.runner.finished(req.NamespacedName, 1) == nil {
		t.Fatal("the run's results were dropped with the refused patch")
	}

	refuse.Store(false)
	res, err := r.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if r.runner.running(req.NamespacedName, 1) || r.runner.finished(req.NamespacedName, 1) != nil {
		t.Error("the copy started again, or its run was kept, after its results landed")
	}
	if res.RequeueAfter < failureRetryBase-2*time.Second {
		t.Errorf("requeued after %s, want the first failure's retry, %s", res.RequeueAfter, failureRetryBase)
	}
	if v, _ := r.failures.Load(req.NamespacedName); v.(failureCount).n != 1 {
		t.Errorf("the failure was counted %d times, want once", v.(failureCount).n)
	}
	got := &v1alpha1.ImageSync{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.LastSyncTime == nil || apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSynced).Status != metav1.ConditionFalse {
		t.Errorf("status lacks the run: %+v", got.Status)
	}
}

// TestHugeErrorsFitTheStatus: a registry's 40 KiB error body lands cut to the CRD's bounds,
// in the tag's error and in the conditions, so that the API server takes the status.
func TestHugeErrorsFitTheStatus(t *testing.T) {
	t.Parallel()
	is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1}}
	r := &Reconciler{Recorder: events.NewFakeRecorder(16)}
	huge := errors.New(strings.Repeat("DENIED: requested access to the resource is denied; ", 800))
	run := &syncRun{finished: time.Now(), results: []imagecopy.Result{{Tag: "1", Err: &imagecopy.SideError{Side: "source", Ref: "src/a:1", StatusCode: http.StatusForbidden, Err: huge}}}}
	if !r.record(context.Background(), is, run, true) {
		t.Fatal("a failed tag was recorded as a success")
	}
	if got := len(is.Status.Images[0].Error); got > maxImageError {
		t.Errorf("status.images[0].error has %d bytes, the CRD takes %d", got, maxImageError)
	}
	for _, c := range is.Status.Conditions {
		if len(c.Message) > maxImageError+100 {
			t.Errorf("condition %s quotes %d bytes of the registry's answer, want at most %d", c.Type, len(c.Message), maxImageError)
		}
	}
}

// TestSyncsAreSpreadOverTheirIntervalAndNeverCloser: 1,000 ImageSyncs due at the same
// moment (created together, or after a restart) are scheduled across the whole interval,
// each at a phase its UID fixes, never sooner than an interval after its last start, and at
// the same phase again on the next run.
func TestSyncsAreSpreadOverTheirIntervalAndNeverCloser(t *testing.T) {
	t.Parallel()
	const interval = time.Hour
	start := time.Date(2026, 12, 7, 10, 17, 3, 0, time.UTC)
	buckets := make([]int, 6) // ten-minute buckets of the hour after the earliest
	for i := range 1000 {
		uid := types.UID(fmt.Sprintf("5f1e0d3c-%04d-4000-8000-000000000000", i))
		next := nextSlot(uid, interval, start.Add(interval))
		if d := next.Sub(start); d < interval || d >= 2*interval {
			t.Fatalf("%s: next sync %s after the last start, want within [1h, 2h)", uid, d)
		}
		buckets[int(next.Sub(start.Add(interval))/(10*time.Minute))]++
		if again := nextSlot(uid, interval, next.Add(interval)); again.Sub(next) != interval {
			t.Fatalf("%s: the following sync is %s later, want exactly the interval", uid, again.Sub(next))
		}
	}
	for i, n := range buckets {
		if n < 120 || n > 220 { // 1000/6 ≈ 167 each
			t.Errorf("bucket %d holds %d of 1000 syncs: not spread (%v)", i, n, buckets)
		}
	}
}

// TestADeletedImageSyncsSeriesGo: the bytes counter of an ImageSync that is gone is
// dropped, so the series of a long-lived manager follow the ImageSyncs that exist.
func TestADeletedImageSyncsSeriesGo(t *testing.T) {
	t.Parallel()
	syncBytes.WithLabelValues("default", "deleted-one").Add(42)
	syncBytes.WithLabelValues("default", "kept-one").Add(7)
	kept := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kept-one"}}
	r, _ := unitSync(t, kept)
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "deleted-one"}}); err != nil {
		t.Fatal(err)
	}
	// DeleteLabelValues says whether the series was there.
	if syncBytes.DeleteLabelValues("default", "deleted-one") {
		t.Error("the deleted ImageSync's series is still exported")
	}
	if !syncBytes.DeleteLabelValues("default", "kept-one") {
		t.Error("another ImageSync's series went with it")
	}
}

// TestACacheBehindTheRecordedStatusDoesNotStartTheCopyAgain: once a run's results landed,
// a reconcile that still reads the status from before (the cache had not caught up: it
// says the copy is under way) must not take the ImageSync for due and copy again.
func TestACacheBehindTheRecordedStatusDoesNotStartTheCopyAgain(t *testing.T) {
	t.Parallel()
	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Generation: 1},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: "127.0.0.1:1/a", Tags: []string{"1"}}, // the run fails fast
			Target: v1alpha1.ImageTarget{Image: "127.0.0.1:1/b"},
		},
	}
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	var stale atomic.Pointer[v1alpha1.ImageSync]
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(s).WithObjects(is).WithStatusSubresource(is).Build(), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, o ...client.GetOption) error {
			if old := stale.Load(); old != nil {
				old.DeepCopyInto(obj.(*v1alpha1.ImageSync))
				return nil
			}
			return c.Get(ctx, key, obj, o...)
		},
	})
	r := &Reconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(16), Clock: clock.RealClock{}, runner: startedRunner(t, 1, 0)}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(is)}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	syncing := &v1alpha1.ImageSync{}
	if err := c.Get(context.Background(), req.NamespacedName, syncing); err != nil {
		t.Fatal(err)
	}
	if c := apimeta.FindStatusCondition(syncing.Status.Conditions, v1alpha1.ConditionSynced); c == nil || c.Reason != string(v1alpha1.ReasonSyncing) {
		t.Fatalf("Synced = %+v after the first reconcile, want Syncing", c)
	}
	select {
	case <-r.runner.events:
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not end")
	}
	if _, err := r.Reconcile(context.Background(), req); err != nil { // records the run
		t.Fatal(err)
	}
	if r.runner.finished(req.NamespacedName, 1) != nil {
		t.Fatal("the run was not recorded")
	}

	stale.Store(syncing)
	res, err := r.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if r.runner.running(req.NamespacedName, 1) || r.runner.finished(req.NamespacedName, 1) != nil {
		t.Fatal("a reconcile reading the status from before the recorded run copied again")
	}
	if res.RequeueAfter <= 0 {
		t.Errorf("Reconcile = %+v, want to come back when the next run is due", res)
	}

	// Deleted and created again under the same name, faster than a reconcile saw it gone:
	// another object, due at once.
	again := is.DeepCopy()
	again.UID, again.Status = "another-uid", v1alpha1.ImageSyncStatus{}
	stale.Store(again)
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if !r.runner.running(req.NamespacedName, 1) && r.runner.finished(req.NamespacedName, 1) == nil {
		t.Error("an ImageSync created again under the same name was taken for the one whose run was recorded")
	}
	// And a run of the former object that ended unrecorded is not recorded into it.
	select {
	case <-r.runner.events:
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not end")
	}
	third := again.DeepCopy()
	third.UID = "a-third-uid"
	stale.Store(third)
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	r.runner.mu.Lock()
	run := r.runner.runs[req.NamespacedName]
	r.runner.mu.Unlock()
	if run == nil || run.uid != third.UID {
		t.Errorf("the runner holds %+v for the ImageSync created a third time, want a run of its own", run)
	}
}
