package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/tagselect"
)

// imageSyncMirrorIndex indexes ImageSyncs by the RegistryMirror they target.
const imageSyncMirrorIndex = "spec.target.registryMirrorRef.name"

// ImageSyncReconciler reconciles ImageSync objects.
//
// ImageSync has no finalizer: the images it copied stay in the target registry when it is
// deleted (a registry is not a cache), so there is nothing to clean up.
type ImageSyncReconciler struct {
	// Client reads and writes through the manager's cache.
	Client client.Client
	// Recorder emits Events.
	Recorder recorder.EventRecorder
}

// +kubebuilder:rbac:groups=regwire.dev,resources=imagesyncs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=regwire.dev,resources=imagesyncs/status,verbs=get;update;patch

// SetupWithManager registers the reconciler with mgr.
func (r *ImageSyncReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.ImageSync{}, imageSyncMirrorIndex, func(o client.Object) []string {
		if ref := o.(*v1alpha1.ImageSync).Spec.Target.RegistryMirrorRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing ImageSyncs by RegistryMirror: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ImageSync{}).
		Watches(&v1alpha1.RegistryMirror{}, handler.EnqueueRequestsFromMapFunc(r.syncsForMirror)).
		Named("imagesync").
		Complete(r)
}

// syncsForMirror maps a RegistryMirror to the ImageSyncs that target it.
func (r *ImageSyncReconciler) syncsForMirror(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1alpha1.ImageSyncList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{imageSyncMirrorIndex: o.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "Listing ImageSyncs for RegistryMirror failed", "registryMirror", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// Reconcile checks one ImageSync and, once the copy engine lands, runs it on schedule.
func (r *ImageSyncReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	is := &v1alpha1.ImageSync{}
	if err := r.Client.Get(ctx, req.NamespacedName, is); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !is.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	before := is.DeepCopy()
	defer func() {
		is.Status.ObservedGeneration = is.Generation
		if err := patchStatus(ctx, r.Client, before, is); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
		}
	}()

	if err := r.reconcileSpec(is); err != nil {
		return ctrl.Result{}, nil // reported in conditions; a spec change brings the object back
	}
	if err := r.reconcileTarget(ctx, is); err != nil {
		if errors.Is(err, errTargetNotFound) {
			return ctrl.Result{}, nil // the RegistryMirror watch brings the object back
		}
		return ctrl.Result{}, err
	}
	r.reconcileSync(is)
	return ctrl.Result{}, nil
}

// reconcileSpec checks what CEL cannot: the tag pattern and the semver range.
func (r *ImageSyncReconciler) reconcileSpec(is *v1alpha1.ImageSync) error {
	src := is.Spec.Source
	_, err := tagselect.New(tagselect.Spec{Tags: src.Tags, Pattern: src.TagPattern, Semver: src.Semver})
	if err != nil {
		msg := err.Error()
		if !isCondition(is.Status.Conditions, v1alpha1.ConditionReady, v1alpha1.ReasonInvalidSpec) {
			r.Recorder.Eventf(is, nil, corev1.EventTypeWarning, v1alpha1.ReasonInvalidSpec, "Validate", "%s", msg)
		}
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, msg)
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, msg)
		return err
	}
	return nil
}

var errTargetNotFound = errors.New("target RegistryMirror not found")

// reconcileTarget resolves the target repository into status.targetImage.
func (r *ImageSyncReconciler) reconcileTarget(ctx context.Context, is *v1alpha1.ImageSync) error {
	t := is.Spec.Target
	if t.RegistryMirrorRef == nil {
		is.Status.TargetImage = string(t.Image)
		return nil
	}
	rm := &v1alpha1.RegistryMirror{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: t.RegistryMirrorRef.Name}, rm); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading RegistryMirror %s: %w", t.RegistryMirrorRef.Name, err)
		}
		is.Status.TargetImage = ""
		msg := fmt.Sprintf("spec.target.registryMirrorRef: RegistryMirror %q not found; create it or fix the name", t.RegistryMirrorRef.Name)
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTargetNotFound, msg)
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, v1alpha1.ReasonTargetNotFound, msg)
		return errTargetNotFound
	}
	is.Status.TargetImage = string(rm.Spec.Host) + "/" + t.Repository
	return nil
}

// reconcileSync will run the copy engine; until it exists the conditions say so.
func (r *ImageSyncReconciler) reconcileSync(is *v1alpha1.ImageSync) {
	if is.Spec.Suspend {
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true")
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true")
		return
	}
	msg := "copying images is not implemented in this version"
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionUnknown, v1alpha1.ReasonNotImplemented, msg)
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotImplemented, msg)
}
