// Package agentdaemonset is the controller of the node agent DaemonSet, the one
// cluster-wide object every RegistryMirror relies on: it creates the DaemonSet when the
// first RegistryMirror appears, updates it when what the manager wants of it changes (image,
// flags, scheduling), puts it back when it is edited or deleted by hand, and has the
// manager's Deployment own it, so that uninstalling regwire removes the agents with it.
package agentdaemonset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/regwire/regwire/api/v1alpha1"
)

// Reconciler keeps the node agent DaemonSet.
type Reconciler struct {
	// Client reads and writes through the manager's cache (DaemonSets of Namespace,
	// RegistryMirrors).
	Client client.Client
	// APIReader reads the manager's own Pod, ReplicaSet and Deployment straight from the
	// API server, once: caching them would watch every Pod of the cluster.
	APIReader client.Reader
	// Namespace is the operator's namespace, which holds the DaemonSet.
	Namespace string
	// Options shape the DaemonSet.
	Options Options
	// ManagerPod is the manager's own Pod (POD_NAME in Namespace); "" when the manager
	// does not run in a Pod (the embedded demo, tests), and then the DaemonSet has no
	// owner. Otherwise the Deployment that runs the Pod owns the DaemonSet.
	ManagerPod string

	// want and wantHash are the DaemonSet regwire wants and its hash, made once: Options
	// do not change while the manager runs.
	wantOnce sync.Once
	want     *appsv1.DaemonSet
	wantHash string
	wantErr  error
	// owner is the manager's Deployment, nil when none runs it; ownerKnown once looked up.
	owner      *metav1.OwnerReference
	ownerKnown bool
}

// +kubebuilder:rbac:groups=regwire.dev,resources=registrymirrors,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,namespace=system,resources=daemonsets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",namespace=system,resources=pods,verbs=get
// +kubebuilder:rbac:groups=apps,namespace=system,resources=replicasets;deployments,verbs=get

// SetupWithManager registers the reconciler with mgr. There is one object to keep, so
// every event maps to the same request.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	theDaemonSet := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: r.Namespace, Name: Name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentdaemonset").
		// The first RegistryMirror asks for the agents; later ones change nothing here.
		Watches(&v1alpha1.RegistryMirror{}, theDaemonSet, builder.WithPredicates(predicate.Funcs{
			UpdateFunc:  func(event.UpdateEvent) bool { return false },
			DeleteFunc:  func(event.DeleteEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		// Edited or deleted by hand: put back.
		Watches(&appsv1.DaemonSet{}, theDaemonSet, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == r.Namespace && o.GetName() == Name
		}))).
		Complete(r)
}

// staleCacheRetry is how soon a reconcile that met a cache behind its own writes looks
// again.
const staleCacheRetry = 200 * time.Millisecond

// agentTemplateHashAnnotation records the hash of the DaemonSet fields regwire manages,
// so that a reconcile of an unchanged DaemonSet writes nothing: comparing the fields
// themselves would always differ, since the API server fills in defaults regwire does not
// set.
const agentTemplateHashAnnotation = "regwire.dev/agent-template-hash"

// Reconcile creates the DaemonSet once a RegistryMirror exists, and updates it when what
// regwire wants of it changed (a new image, flags, environment or owner) or the hash
// annotation is gone. Once created it stays while the manager's Deployment does, idle
// agents waiting for the next mirror.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	r.wantOnce.Do(func() {
		r.want = New(r.Namespace, r.Options)
		r.wantHash, r.wantErr = templateHash(r.want)
	})
	if r.wantErr != nil {
		return ctrl.Result{}, r.wantErr
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: Name}}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(ds), ds); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	}
	if ds.CreationTimestamp.IsZero() {
		mirrors := &v1alpha1.RegistryMirrorList{}
		if err := r.Client.List(ctx, mirrors, client.Limit(1)); err != nil {
			return ctrl.Result{}, err
		}
		if len(mirrors.Items) == 0 {
			return ctrl.Result{}, nil // no mirror yet: no agent needed
		}
	}
	owner, err := r.managerDeployment(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	hash := r.wantHash
	if owner != nil {
		hash += "-" + string(owner.UID)[:8]
	}
	want := r.want.DeepCopy() // a copy: the client decodes its answer into ds
	res, err := controllerutil.CreateOrPatch(ctx, r.Client, ds, func() error {
		if !ds.CreationTimestamp.IsZero() && ds.Annotations[agentTemplateHashAnnotation] == hash {
			return nil
		}
		ds.Labels = want.Labels
		if ds.Annotations == nil {
			ds.Annotations = map[string]string{}
		}
		ds.Annotations[agentTemplateHashAnnotation] = hash
		if ds.CreationTimestamp.IsZero() {
			ds.Spec.Selector = want.Spec.Selector // immutable once created
		}
		ds.Spec.Template = want.Spec.Template
		ds.Spec.UpdateStrategy = want.Spec.UpdateStrategy
		if owner != nil {
			ds.OwnerReferences = upsertOwner(ds.OwnerReferences, *owner)
		}
		return nil
	})
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		// The cache has not seen this controller's own last write yet (the first mirrors
		// and the DaemonSet's own events come together): look again when it has.
		logf.FromContext(ctx).V(1).Info("The agent DaemonSet changed meanwhile; looking again", "error", err.Error())
		return ctrl.Result{RequeueAfter: staleCacheRetry}, nil
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("ensuring the agent DaemonSet: %w", err)
	}
	if res != controllerutil.OperationResultNone {
		logf.FromContext(ctx).Info("Agent DaemonSet "+string(res), "daemonSet", Name, "ownedBy", ownerName(owner))
	}
	return ctrl.Result{}, nil
}

// managerDeployment finds the Deployment that runs the manager's Pod (through its
// ReplicaSet), once: nil when the manager runs in no Pod or no Deployment runs it.
func (r *Reconciler) managerDeployment(ctx context.Context) (*metav1.OwnerReference, error) {
	if r.ManagerPod == "" || r.ownerKnown {
		return r.owner, nil
	}
	pod := &corev1.Pod{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: r.ManagerPod}, pod); err != nil {
		return nil, fmt.Errorf("reading the manager's Pod %s/%s to find its Deployment: %w", r.Namespace, r.ManagerPod, err)
	}
	rs, dep := &appsv1.ReplicaSet{}, &appsv1.Deployment{}
	found, err := r.controller(ctx, pod, "ReplicaSet", rs)
	if err == nil && found {
		found, err = r.controller(ctx, rs, "Deployment", dep)
	}
	if err != nil {
		return nil, err
	}
	r.ownerKnown = true
	if !found {
		logf.FromContext(ctx).Info("No Deployment runs the manager: the agent DaemonSet has no owner and stays when the manager goes", "pod", r.ManagerPod)
		return nil, nil
	}
	r.owner = &metav1.OwnerReference{APIVersion: appsv1.SchemeGroupVersion.String(), Kind: "Deployment", Name: dep.Name, UID: dep.UID}
	return r.owner, nil
}

// controller reads into owner the object of kind that controls obj, and says whether
// there is one.
func (r *Reconciler) controller(ctx context.Context, obj client.Object, kind string, owner client.Object) (bool, error) {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != kind {
		return false, nil
	}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: ref.Name}, owner); err != nil {
		return false, fmt.Errorf("reading the manager's %s %s: %w", kind, ref.Name, err)
	}
	return true, nil
}

// upsertOwner puts owner into refs, replacing an older reference to an object of the same
// kind and name (a Deployment deleted and created again has a new UID).
func upsertOwner(refs []metav1.OwnerReference, owner metav1.OwnerReference) []metav1.OwnerReference {
	for i, ref := range refs {
		if ref.APIVersion == owner.APIVersion && ref.Kind == owner.Kind && ref.Name == owner.Name {
			refs[i] = owner
			return refs
		}
	}
	return append(refs, owner)
}

func ownerName(o *metav1.OwnerReference) string {
	if o == nil {
		return ""
	}
	return o.Kind + "/" + o.Name
}

// templateHash hashes the fields of the agent DaemonSet regwire sets.
func templateHash(ds *appsv1.DaemonSet) (string, error) {
	b, err := json.Marshal(struct {
		Labels   map[string]string
		Template corev1.PodTemplateSpec
		Strategy appsv1.DaemonSetUpdateStrategy
	}{ds.Labels, ds.Spec.Template, ds.Spec.UpdateStrategy})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:10]), nil
}
