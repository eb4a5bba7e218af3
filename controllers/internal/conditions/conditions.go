// Package conditions holds what every regwire reconciler does with status: set a condition,
// summarise Ready, carry a problem the user must fix to its condition, patch status only
// when it changed, and merge requeue times.
package conditions

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
)

// MaxMessage is the longest condition message the API server takes (metav1.Condition's
// maxLength).
const MaxMessage = 32768

// Set sets one condition, keeping lastTransitionTime when the status is unchanged. A
// message longer than MaxMessage is cut: a status the API server refuses would lose the
// whole update.
func Set(conds *[]metav1.Condition, generation int64, typ string, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type:               typ,
		Status:             status,
		ObservedGeneration: generation,
		Reason:             string(reason),
		Message:            Cut(message, MaxMessage),
	})
}

// cutMark ends a cut message.
const cutMark = " …(cut)"

// Cut returns s when it has at most n bytes; else its start, cut on a character boundary,
// and a mark that says so, n bytes at most in all.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	end := max(n-len(cutMark), 0)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + cutMark
}

// SetReadySummary sets Ready from the given conditions, in order: True when all are True,
// otherwise False with the reason and message of the first that is not.
func SetReadySummary(conds *[]metav1.Condition, generation int64, types ...string) {
	for _, t := range types {
		c := apimeta.FindStatusCondition(*conds, t)
		if c == nil {
			Set(conds, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPending, t+" has not been evaluated yet")
			return
		}
		if c.Status != metav1.ConditionTrue {
			Set(conds, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ConditionReason(c.Reason), t+": "+c.Message)
			return
		}
	}
	Set(conds, generation, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "")
}

// Stall marks, where a problem only a person can fix is found, that the object is
// stalled: the controller keeps retrying, but nothing changes until the spec, a Secret it
// names or another object does. SetProgress keeps the mark while Ready carries reason.
func Stall(conds *[]metav1.Condition, generation int64, reason v1alpha1.ConditionReason, message string) {
	Set(conds, generation, v1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
}

// SetProgress sets Reconciling and Stalled from Ready, the way kstatus (Flux, kpt) reads
// them: both absent when Ready is True; Stalled, with Ready's message, while Ready is False
// for the reason a Stall named; Reconciling otherwise. A suspended object is neither
// (kstatus still reads its False Ready as InProgress).
func SetProgress(conds *[]metav1.Condition, generation int64) {
	ready := apimeta.FindStatusCondition(*conds, v1alpha1.ConditionReady)
	stalled := apimeta.FindStatusCondition(*conds, v1alpha1.ConditionStalled)
	switch {
	case ready == nil:
		apimeta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
		Set(conds, generation, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonPending, "not evaluated yet")
	case ready.Status == metav1.ConditionTrue || ready.Reason == string(v1alpha1.ReasonSuspended):
		apimeta.RemoveStatusCondition(conds, v1alpha1.ConditionReconciling)
		apimeta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
	case stalled != nil && stalled.Status == metav1.ConditionTrue && stalled.Reason == ready.Reason:
		apimeta.RemoveStatusCondition(conds, v1alpha1.ConditionReconciling)
		Set(conds, generation, v1alpha1.ConditionStalled, metav1.ConditionTrue, v1alpha1.ConditionReason(ready.Reason), ready.Message)
	default:
		apimeta.RemoveStatusCondition(conds, v1alpha1.ConditionStalled)
		Set(conds, generation, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ConditionReason(ready.Reason), ready.Message)
	}
}

// Has reports whether the condition of type typ currently has the given reason.
func Has(conds []metav1.Condition, typ string, reason v1alpha1.ConditionReason) bool {
	c := apimeta.FindStatusCondition(conds, typ)
	return c != nil && c.Reason == string(reason)
}

// Error is a problem the user must fix (a missing Secret, a field the controller refuses),
// to be shown in a condition with its reason rather than returned from Reconcile: a change
// to the object, or RetryAfter, brings it back, not the work queue's backoff. It is the one
// way regwire's reconcilers carry such a problem from where it is found to its condition.
type Error struct {
	// Reason is the condition's reason.
	Reason v1alpha1.ConditionReason
	// Message is the condition's message: it names the field at fault and the fix.
	Message string
	// RetryAfter, when set, is when to look again: what the problem depends on is not
	// watched (Secrets, ConfigMaps read directly).
	RetryAfter time.Duration
	// Stalled says that only a person can fix it (Stalledf): the object reports Stalled
	// rather than Reconciling while it lasts.
	Stalled bool
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given reason and a formatted message.
func Errorf(reason v1alpha1.ConditionReason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Stalledf returns an *Error that only a person can fix: a spec the controller refuses, a
// certificate or credentials that will not start working by themselves.
func Stalledf(reason v1alpha1.ConditionReason, format string, args ...any) *Error {
	e := Errorf(reason, format, args...)
	e.Stalled = true
	return e
}

// Retry returns e to be retried after d.
func (e *Error) Retry(d time.Duration) *Error {
	e.RetryAfter = d
	return e
}

// Reported returns the *Error in err's chain, if any.
func Reported(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Report turns the result of one phase into what Reconcile returns: an *Error is set on
// the condition of type typ (False), stalls the object when it is Stalled, and becomes a
// requeue after its RetryAfter; other errors are returned as they are.
func Report(conds *[]metav1.Condition, generation int64, typ string, res ctrl.Result, err error) (ctrl.Result, error) {
	e, ok := Reported(err)
	if !ok {
		return res, err
	}
	Set(conds, generation, typ, metav1.ConditionFalse, e.Reason, e.Message)
	if e.Stalled {
		Stall(conds, generation, e.Reason, typ+": "+e.Message)
	}
	return LowestRequeue(res, ctrl.Result{RequeueAfter: e.RetryAfter}), nil
}

// PatchStatus sends the status changes made to obj since before as a merge patch; it sends
// nothing at all when there are none, so a no-op reconcile writes nothing.
func PatchStatus(ctx context.Context, c client.Client, before, obj client.Object) error {
	patch := client.MergeFrom(before)
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	if string(data) == "{}" {
		return nil
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, patch))
}

// LowestRequeue merges two results: the earliest positive RequeueAfter wins.
func LowestRequeue(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0 || a.RequeueAfter < b.RequeueAfter:
		return a
	default:
		return b
	}
}
