package conditions

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/regwire/regwire/api/v1alpha1"
)

// kstatusOf is what GitOps tools (Flux, Argo CD through its kstatus-based checks, kpt)
// compute for obj.
func kstatusOf(t *testing.T, obj runtime.Object) *status.Result {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: m})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// declaredReasons are every ConditionReason constant of the API package, read from its
// source: a reason added without deciding how GitOps tools see it fails the test below.
func declaredReasons(t *testing.T) []v1alpha1.ConditionReason {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../../api/v1alpha1/conditions.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []v1alpha1.ConditionReason
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "ConditionReason" {
				continue
			}
			for _, v := range vs.Values {
				s, err := strconv.Unquote(v.(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, v1alpha1.ConditionReason(s))
			}
		}
	}
	if len(out) < 40 {
		t.Fatalf("found only %d reasons in api/v1alpha1/conditions.go", len(out))
	}
	return out
}

// TestGitOpsToolsSeeEveryStateTheControllersSet: for every reason regwire declares, a
// RegistryMirror and an ImageSync whose Ready carries it are Current, InProgress or
// Failed to kstatus as documented; and kstatus's own rules (a spec not observed yet, a
// deletion under way) hold with regwire's conditions.
func TestGitOpsToolsSeeEveryStateTheControllersSet(t *testing.T) {
	t.Parallel()
	const (
		current    = status.CurrentStatus
		inProgress = status.InProgressStatus
		failed     = status.FailedStatus
	)
	type expectation struct {
		ready metav1.ConditionStatus // Ready's status when it carries this reason
		want  status.Status
	}
	done := expectation{metav1.ConditionTrue, current}
	waiting := expectation{metav1.ConditionFalse, inProgress}
	stuck := expectation{metav1.ConditionFalse, failed}
	expect := map[v1alpha1.ConditionReason]expectation{
		// Ready True: the reasons of conditions that are True.
		v1alpha1.ReasonReconciled: done, v1alpha1.ReasonCAValid: done, v1alpha1.ReasonCAExpiringSoon: done,
		v1alpha1.ReasonSystemRoots: done, v1alpha1.ReasonInsecureSkipVerify: done, v1alpha1.ReasonNotRequested: done,
		v1alpha1.ReasonNodesReady: done, v1alpha1.ReasonPullSecretsReady: done, v1alpha1.ReasonClientCertificateReady: done,
		v1alpha1.ReasonRepositoryCreated: done, v1alpha1.ReasonRepositoryUpdated: done, v1alpha1.ReasonRepositoryUpToDate: done,
		v1alpha1.ReasonSyncSucceeded: done, v1alpha1.ReasonApplied: done, v1alpha1.ReasonHostedReadableAnonymously: done,
		// Suspended: Ready is False, so kstatus says InProgress (leave a suspended ImageSync
		// out of health checks; Argo CD's health script says Suspended).
		v1alpha1.ReasonSuspended: waiting,
		// The controller is working on it, or waits for something that can come.
		v1alpha1.ReasonPending: waiting, v1alpha1.ReasonCredentialsNotFound: waiting, v1alpha1.ReasonCASourceNotFound: waiting,
		v1alpha1.ReasonNodesNotReady: waiting, v1alpha1.ReasonNoNodesSelected: waiting, v1alpha1.ReasonNotPublished: waiting,
		v1alpha1.ReasonAgentNotReporting: waiting, v1alpha1.ReasonApplying: waiting, v1alpha1.ReasonConfigPathNotSet: waiting,
		v1alpha1.ReasonForeignConfigWins: waiting, v1alpha1.ReasonMirrorRefusesAnonymousPulls: waiting,
		v1alpha1.ReasonWaitingForNodes: waiting, v1alpha1.ReasonClientCertificateNotFound: waiting,
		v1alpha1.ReasonPullSecretsFailing: waiting, v1alpha1.ReasonNexusUnreachable: waiting, v1alpha1.ReasonProvisionFailed: waiting,
		v1alpha1.ReasonSyncing: waiting, v1alpha1.ReasonSyncFailed: waiting, v1alpha1.ReasonTargetNotFound: waiting,
		v1alpha1.ReasonTargetNotProvisioned: waiting, v1alpha1.ReasonSourceNotFound: waiting,
		v1alpha1.ReasonSourceUnreachable: waiting, v1alpha1.ReasonTargetUnreachable: waiting, v1alpha1.ReasonSourceRateLimited: waiting, v1alpha1.ReasonSignatureNotVerified: waiting, v1alpha1.ReasonVerifyKeyInvalid: waiting,
		v1alpha1.ReasonApplyFailed: waiting, v1alpha1.ReasonProbeFailed: waiting,
		// Only a person can fix these.
		v1alpha1.ReasonInvalidSpec: stuck, v1alpha1.ReasonTargetNotAllowed: stuck, v1alpha1.ReasonSecretNamespaceNotAllowed: stuck, v1alpha1.ReasonCAInvalid: stuck, v1alpha1.ReasonCAExpired: stuck,
		v1alpha1.ReasonHostConflict: stuck, v1alpha1.ReasonRuntimeUnsupported: stuck,
		v1alpha1.ReasonClientCertificateInvalid: stuck, v1alpha1.ReasonCredentialsInvalid: stuck,
		v1alpha1.ReasonPathRoutingUnsupported: stuck, v1alpha1.ReasonSourceAuthFailed: stuck, v1alpha1.ReasonAnonymousAccessUnusable: stuck,
		v1alpha1.ReasonTargetAuthFailed: stuck, v1alpha1.ReasonNexusAuthFailed: stuck, v1alpha1.ReasonUserSecretConflict: stuck,
	}
	declared := declaredReasons(t)
	for _, r := range declared {
		if _, ok := expect[r]; !ok {
			t.Errorf("reason %s: decide how GitOps tools see it (and whether the controllers raise it with Stalledf)", r)
		}
	}
	// The controllers raise exactly the stuck reasons as problems only a person can fix.
	for r, stalls := range raisedReasons(t) {
		if e, ok := expect[r]; ok && stalls != (e == stuck) {
			t.Errorf("reason %s: the controllers raise it stalled=%t, the table says %v", r, stalls, e.want)
		}
	}

	objects := map[string]func(conds []metav1.Condition, generation, observed int64) runtime.Object{
		"RegistryMirror": func(conds []metav1.Condition, generation, observed int64) runtime.Object {
			return &v1alpha1.RegistryMirror{
				TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RegistryMirror"},
				ObjectMeta: metav1.ObjectMeta{Name: "nexus", Generation: generation},
				Status:     v1alpha1.RegistryMirrorStatus{ObservedGeneration: observed, Conditions: conds},
			}
		},
		"ImageSync": func(conds []metav1.Condition, generation, observed int64) runtime.Object {
			return &v1alpha1.ImageSync{
				TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ImageSync"},
				ObjectMeta: metav1.ObjectMeta{Name: "busybox", Namespace: "default", Generation: generation},
				Status:     v1alpha1.ImageSyncStatus{ObservedGeneration: observed, Conditions: conds},
			}
		},
	}
	withReady := func(ready metav1.ConditionStatus, reason v1alpha1.ConditionReason) []metav1.Condition {
		var conds []metav1.Condition
		if expect[reason] == stuck {
			Stall(&conds, 1, reason, "where it was raised")
		}
		Set(&conds, 1, v1alpha1.ConditionReady, ready, reason, "what the controller says about "+string(reason))
		SetProgress(&conds, 1)
		return conds
	}
	for kind, newObj := range objects {
		for _, r := range declared {
			e := expect[r]
			res := kstatusOf(t, newObj(withReady(e.ready, r), 1, 1))
			if res.Status != e.want {
				t.Errorf("%s with Ready %s, reason %s: kstatus %s (%q), want %s", kind, e.ready, r, res.Status, res.Message, e.want)
			}
			if e.want != current && res.Message != "what the controller says about "+string(r) {
				t.Errorf("%s with reason %s: kstatus says %q, not the controller's message", kind, r, res.Message)
			}
		}

		// A spec the controller has not seen yet is InProgress, however Ready looked.
		if res := kstatusOf(t, newObj(withReady(metav1.ConditionTrue, v1alpha1.ReasonReconciled), 2, 1)); res.Status != inProgress {
			t.Errorf("%s at generation 2, observed 1: %s", kind, res.Status)
		}
		// Once Ready turns True, Reconciling and Stalled are gone: Current.
		conds := withReady(metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec)
		Set(&conds, 1, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "")
		SetProgress(&conds, 1)
		if res := kstatusOf(t, newObj(conds, 1, 1)); res.Status != current || len(conds) != 1 {
			t.Errorf("%s fixed after a stall: %s, conditions %v", kind, res.Status, conds)
		}
	}

	// A stall lasts while Ready keeps its reason, through reconciles that raise nothing
	// (an ImageSync waiting for its next run), and ends when Ready moves on.
	conds := withReady(metav1.ConditionFalse, v1alpha1.ReasonSourceAuthFailed)
	SetProgress(&conds, 1)
	if res := kstatusOf(t, objects["ImageSync"](conds, 1, 1)); res.Status != failed {
		t.Errorf("an ImageSync still refused by its source, a reconcile later: %s", res.Status)
	}
	Set(&conds, 1, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSourceUnreachable, "the source is down")
	SetProgress(&conds, 1)
	if res := kstatusOf(t, objects["ImageSync"](conds, 1, 1)); res.Status != inProgress || res.Message != "the source is down" {
		t.Errorf("an ImageSync whose source went from refusing to unreachable: %s (%q), want InProgress", res.Status, res.Message)
	}

	// An ImageSync resyncing on its interval stays Current: Ready stays True while Synced
	// is Unknown.
	conds = withReady(metav1.ConditionTrue, v1alpha1.ReasonSyncSucceeded)
	Set(&conds, 1, v1alpha1.ConditionSynced, metav1.ConditionUnknown, v1alpha1.ReasonSyncing, "copying selected tags")
	SetProgress(&conds, 1)
	if res := kstatusOf(t, objects["ImageSync"](conds, 1, 1)); res.Status != current {
		t.Errorf("an ImageSync resyncing while Ready: %s", res.Status)
	}
	// A RegistryMirror being deleted, waiting for its nodes, is Terminating.
	rm := objects["RegistryMirror"](withReady(metav1.ConditionFalse, v1alpha1.ReasonWaitingForNodes), 1, 1).(*v1alpha1.RegistryMirror)
	now := metav1.Now()
	rm.DeletionTimestamp, rm.Finalizers = &now, []string{v1alpha1.RegistryMirrorFinalizer}
	if res := kstatusOf(t, rm); res.Status != status.TerminatingStatus {
		t.Errorf("a RegistryMirror being deleted: %s", res.Status)
	}
}

// raisedReasons reads the controllers' source for the reasons they raise as problems,
// with whether each is raised as one only a person can fix (Stalledf, Stall, or a
// classification that says stalled) or not (Errorf).
func raisedReasons(t *testing.T) map[v1alpha1.ConditionReason]bool {
	t.Helper()
	raise := regexp.MustCompile(`conditions\.(Errorf|Stalledf)\(v1alpha1\.Reason(\w+)|return v1alpha1\.Reason(\w+), (true|false)`)
	files, err := filepath.Glob("../../*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../*/*.go")
	out := map[v1alpha1.ConditionReason]bool{}
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range raise.FindAllStringSubmatch(string(b), -1) {
			reason, stalls := m[2], m[1] == "Stalledf"
			if m[3] != "" {
				reason, stalls = m[3], m[4] == "true"
			}
			r := v1alpha1.ConditionReason(reason)
			if prev, seen := out[r]; seen && prev != stalls {
				t.Errorf("%s: reason %s is raised both stalled and not", f, r)
			}
			out[r] = stalls
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d raised reasons in the controllers' source", len(out))
	}
	return out
}
