package controllers

import (
	"context"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
)

// setCondition sets one condition, keeping lastTransitionTime when the status is unchanged.
func setCondition(conds *[]metav1.Condition, generation int64, typ string, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type:               typ,
		Status:             status,
		ObservedGeneration: generation,
		Reason:             reason,
		Message:            message,
	})
}

// setReadySummary sets Ready from the given conditions, in order: True when all are True,
// otherwise False with the reason and message of the first that is not.
func setReadySummary(conds *[]metav1.Condition, generation int64, types ...string) {
	for _, t := range types {
		c := apimeta.FindStatusCondition(*conds, t)
		if c == nil {
			setCondition(conds, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, "Pending", t+" has not been evaluated yet")
			return
		}
		if c.Status != metav1.ConditionTrue {
			setCondition(conds, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, c.Reason, t+": "+c.Message)
			return
		}
	}
	setCondition(conds, generation, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, "")
}

// patchStatus sends the status changes made to obj since before as a merge patch; it sends
// nothing at all when there are none, so a no-op reconcile writes nothing.
func patchStatus(ctx context.Context, c client.Client, before, obj client.Object) error {
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

// lowestRequeue merges two results: the earliest positive RequeueAfter wins.
func lowestRequeue(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0 || a.RequeueAfter < b.RequeueAfter:
		return a
	default:
		return b
	}
}

// isCondition reports whether the condition of type typ currently has the given reason.
func isCondition(conds []metav1.Condition, typ, reason string) bool {
	c := apimeta.FindStatusCondition(conds, typ)
	return c != nil && c.Reason == reason
}
