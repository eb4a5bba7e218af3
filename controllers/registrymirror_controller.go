package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/cabundle"
)

// caExpiryWarning is how long before a CA certificate expires the controller starts warning.
const caExpiryWarning = 30 * 24 * time.Hour

// RegistryMirrorReconciler reconciles RegistryMirror objects.
type RegistryMirrorReconciler struct {
	// Client reads and writes through the manager's cache.
	Client client.Client
	// APIReader reads Secrets and ConfigMaps named by caFrom directly from the API server,
	// so the manager never caches every Secret of the cluster.
	APIReader client.Reader
	// Recorder emits Events.
	Recorder recorder.EventRecorder
	// Now returns the current time; tests set it.
	Now func() time.Time
	// Namespace is the operator's namespace: published mirrors and the agent DaemonSet.
	Namespace string
	// Agent configures the node agent DaemonSet.
	Agent AgentOptions
	// NexusHTTP, when set, is the HTTP client for Nexus's REST API (tests); by default
	// one trusting the mirror's CA is built per call.
	NexusHTTP *http.Client

	// provisioned remembers when each mirror generation's repository was last found as
	// specified, so that reconciles between checks send Nexus nothing.
	provisioned sync.Map // types.UID -> provisionCheck

	// agentOnce makes the agent DaemonSet regwire wants, and its hash, once: Agent does not
	// change while the manager runs.
	agentOnce sync.Once
	agentWant *appsv1.DaemonSet
	agentHash string
	agentErr  error
}

// +kubebuilder:rbac:groups=regwire.dev,resources=registrymirrors,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=regwire.dev,resources=registrymirrors/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=regwire.dev,resources=registrymirrors/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=nodes;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=regwire.dev,resources=registrynodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=system,resources=configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,namespace=system,resources=daemonsets,verbs=get;list;watch;create;update;patch

// SetupWithManager registers the reconciler with mgr.
func (r *RegistryMirrorReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.RegistryMirror{}, credentialsIndex, func(o client.Object) []string {
		if ref := o.(*v1alpha1.RegistryMirror).Spec.CredentialsSecretRef; ref != nil {
			return []string{ref.Namespace + "/" + ref.Name}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing RegistryMirrors by credentials: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.RegistryMirror{}).
		// A published ConfigMap edited or deleted by hand is put back.
		Owns(&corev1.ConfigMap{}).
		// Secrets are watched as metadata only: a rotated credentials Secret or a pull
		// secret changed by hand brings its mirror back, and no Secret data is cached.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.mirrorsForSecret)).
		// New matching namespaces and ServiceAccounts get the pull secret.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.pullSecretMirrors), builder.WithPredicates(labelsChanged())).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(r.pullSecretMirrors), builder.WithPredicates(pullSecretsChanged())).
		// An agent report concerns the mirrors it names; node changes can concern every mirror.
		Watches(&v1alpha1.RegistryNode{}, handler.EnqueueRequestsFromMapFunc(mirrorsInReport)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.allMirrors), builder.WithPredicates(nodeSelectionChanged())).
		Named("registrymirror").
		Complete(r)
}

// mirrorsInReport enqueues the mirrors a RegistryNode reports on. A mirror that drops out of
// a report is being deleted, and its deletion polls until the nodes are clean.
func mirrorsInReport(_ context.Context, o client.Object) []reconcile.Request {
	rn, ok := o.(*v1alpha1.RegistryNode)
	if !ok {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(rn.Status.Mirrors))
	for _, m := range rn.Status.Mirrors {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: m.Name}})
	}
	return reqs
}

// allMirrors enqueues every RegistryMirror.
func (r *RegistryMirrorReconciler) allMirrors(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.mirrorRequests(ctx, nil)
}

// mirrorRequests lists the mirrors matching opts from the cache and, when keep is set, keeps
// those it accepts.
func (r *RegistryMirrorReconciler) mirrorRequests(ctx context.Context, keep func(*v1alpha1.RegistryMirror) bool, opts ...client.ListOption) []reconcile.Request {
	list := &v1alpha1.RegistryMirrorList{}
	if err := r.Client.List(ctx, list, opts...); err != nil {
		logf.FromContext(ctx).Error(err, "Listing RegistryMirrors failed")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if keep == nil || keep(&list.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// credentialsIndex indexes RegistryMirrors by "namespace/name" of their credentials Secret.
const credentialsIndex = "spec.credentialsSecretRef"

// mirrorsForSecret maps a Secret to the mirrors using it as credentials, or to the mirror
// whose pull secret it is.
func (r *RegistryMirrorReconciler) mirrorsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	if name := o.GetAnnotations()[pullSecretMirrorAnnotation]; name != "" && o.GetLabels()[PullSecretMirrorLabel] != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return r.mirrorRequests(ctx, nil, client.MatchingFields{credentialsIndex: o.GetNamespace() + "/" + o.GetName()})
}

// pullSecretMirrors enqueues the mirrors that ask for pull secrets.
func (r *RegistryMirrorReconciler) pullSecretMirrors(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.mirrorRequests(ctx, func(rm *v1alpha1.RegistryMirror) bool { return rm.Spec.PullSecrets != nil })
}

// labelsChanged passes creations, deletions and label changes.
func labelsChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !equality.Semantic.DeepEqual(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// pullSecretsChanged passes ServiceAccount creations and changes to imagePullSecrets.
func pullSecretsChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !equality.Semantic.DeepEqual(e.ObjectOld.(*corev1.ServiceAccount).ImagePullSecrets, e.ObjectNew.(*corev1.ServiceAccount).ImagePullSecrets)
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// nodeSelectionChanged passes Node events that can change which mirrors select a node:
// creation, deletion, and label or taint changes; not the status heartbeats that make up
// most Node updates.
func nodeSelectionChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
			return !equality.Semantic.DeepEqual(o.Labels, n.Labels) || !equality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// Reconcile brings one RegistryMirror's status (and, as the node agent and pull secrets
// land, the cluster) in line with its spec.
func (r *RegistryMirrorReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	log := logf.FromContext(ctx)

	rm := &v1alpha1.RegistryMirror{}
	if err := r.Client.Get(ctx, req.NamespacedName, rm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !rm.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, rm)
	}

	// Add the finalizer first and come back: nothing is written anywhere until regwire is
	// sure it will get the chance to clean it up.
	if !controllerutil.ContainsFinalizer(rm, v1alpha1.RegistryMirrorFinalizer) {
		before := rm.DeepCopy()
		controllerutil.AddFinalizer(rm, v1alpha1.RegistryMirrorFinalizer)
		// Not found: deleted since the cache saw it (without a finalizer, at once); nothing to do.
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, rm, client.MergeFrom(before)))
	}

	before := rm.DeepCopy()
	defer func() {
		setReadySummary(&rm.Status.Conditions, rm.Generation,
			v1alpha1.ConditionCAValid, v1alpha1.ConditionNodesReady,
			v1alpha1.ConditionPullSecretsReady, v1alpha1.ConditionProvisioned)
		rm.Status.ObservedGeneration = rm.Generation
		if err := patchStatus(ctx, r.Client, before, rm); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
		}
	}()

	var res ctrl.Result
	var errs []error
	sc := &mirrorScope{rm: rm}
	for _, phase := range []func(context.Context, *mirrorScope) (ctrl.Result, error){
		r.reconcileCA,
		r.reconcileNodes,
		r.reconcilePullSecrets,
		r.reconcileProvision,
	} {
		phaseRes, err := phase(ctx, sc)
		errs = append(errs, err)
		res = lowestRequeue(res, phaseRes)
	}
	if err := kerrors.NewAggregate(errs); err != nil {
		log.Error(err, "Reconcile failed")
		return ctrl.Result{}, err
	}
	return res, nil
}

// mirrorScope carries what one reconcile of a RegistryMirror learns from phase to phase.
type mirrorScope struct {
	rm *v1alpha1.RegistryMirror
	// ca is the resolved CA bundle (nil for system roots).
	ca []byte
	// caUsable is true when nodes may be given the mirror: its CA checked out (or TLS
	// verification is off on purpose).
	caUsable bool
}

// reconcileCA checks the CA bundle and records its expiry in status.
func (r *RegistryMirrorReconciler) reconcileCA(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	conds, gen := &rm.Status.Conditions, rm.Generation
	if rm.Spec.InsecureSkipVerify {
		rm.Status.CANotAfter = nil
		if !isCondition(rm.Status.Conditions, v1alpha1.ConditionCAValid, v1alpha1.ReasonInsecureSkipVerify) {
			r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, v1alpha1.ReasonInsecureSkipVerify, "Validate",
				"TLS verification is off for %s; give the registry's CA in caBundle or caFrom instead", rm.Spec.Host)
		}
		setCondition(conds, gen, v1alpha1.ConditionCAValid, metav1.ConditionFalse, v1alpha1.ReasonInsecureSkipVerify,
			"insecureSkipVerify is true: nodes do not verify the registry's certificate; set caBundle or caFrom and remove insecureSkipVerify")
		sc.caUsable = true
		return ctrl.Result{}, nil
	}

	pemData, field, err := r.caPEM(ctx, rm)
	if err != nil {
		var nf *sourceNotFoundError
		if errors.As(err, &nf) {
			rm.Status.CANotAfter = nil
			setCondition(conds, gen, v1alpha1.ConditionCAValid, metav1.ConditionFalse, v1alpha1.ReasonCASourceNotFound, nf.Error())
			// caFrom objects are read, not watched: look again soon.
			return ctrl.Result{RequeueAfter: time.Minute}, nil
		}
		return ctrl.Result{}, err
	}
	if pemData == nil {
		rm.Status.CANotAfter = nil
		setCondition(conds, gen, v1alpha1.ConditionCAValid, metav1.ConditionTrue, v1alpha1.ReasonSystemRoots,
			"no caBundle or caFrom: nodes verify the registry with their system roots")
		sc.caUsable = true
		return ctrl.Result{}, nil
	}

	bundle, err := cabundle.Parse(pemData)
	if err != nil {
		rm.Status.CANotAfter = nil
		setCondition(conds, gen, v1alpha1.ConditionCAValid, metav1.ConditionFalse, v1alpha1.ReasonCAInvalid,
			fmt.Sprintf("%s: %v", field, err))
		return ctrl.Result{}, nil
	}
	notAfter := bundle.NotAfter()
	rm.Status.CANotAfter = &metav1.Time{Time: notAfter}
	now := r.Now()
	if c := bundle.Expired(now); c != nil {
		setCondition(conds, gen, v1alpha1.ConditionCAValid, metav1.ConditionFalse, v1alpha1.ReasonCAExpired,
			fmt.Sprintf("%s: certificate %q expired at %s; give a current CA", field, c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339)))
		return ctrl.Result{}, nil
	}
	msg := fmt.Sprintf("%d certificate(s), first expiry %s", len(bundle.Certificates), notAfter.UTC().Format(time.RFC3339))
	reason := v1alpha1.ReasonCAValid
	if left := notAfter.Sub(now); left < caExpiryWarning {
		msg += fmt.Sprintf(" (in %s: renew the CA)", left.Round(time.Hour))
		reason = v1alpha1.ReasonCAExpiringSoon
		if !isCondition(rm.Status.Conditions, v1alpha1.ConditionCAValid, reason) {
			r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, reason, "Validate",
				"%s: a CA certificate expires at %s", field, notAfter.UTC().Format(time.RFC3339))
		}
	}
	setCondition(conds, gen, v1alpha1.ConditionCAValid, metav1.ConditionTrue, reason, msg)
	sc.ca, sc.caUsable = pemData, true
	return ctrl.Result{RequeueAfter: nextCACheck(notAfter.Sub(now))}, nil
}

// nextCACheck is when the CA condition next changes by itself: when the first certificate
// enters its last 30 days, or when it expires.
func nextCACheck(left time.Duration) time.Duration {
	if left > caExpiryWarning {
		return left - caExpiryWarning + time.Second
	}
	return left + time.Second
}

// sourceNotFoundError is a caFrom reference to an object or key that does not exist.
type sourceNotFoundError struct{ what string }

func (e *sourceNotFoundError) Error() string { return e.what }

// caPEM returns the CA bundle's PEM data and the field it came from; nil data when none is set.
func (r *RegistryMirrorReconciler) caPEM(ctx context.Context, rm *v1alpha1.RegistryMirror) ([]byte, string, error) {
	return mirrorCA(ctx, r.APIReader, rm)
}

// mirrorCA reads a RegistryMirror's CA bundle from caBundle, or caFrom through reader
// (straight from the API server: no Secret cache).
func mirrorCA(ctx context.Context, reader client.Reader, rm *v1alpha1.RegistryMirror) ([]byte, string, error) {
	switch src := rm.Spec.CAFrom; {
	case rm.Spec.CABundle != "":
		return []byte(rm.Spec.CABundle), "spec.caBundle", nil
	case src == nil:
		return nil, "", nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		field := "spec.caFrom.secretKeyRef"
		s := &corev1.Secret{}
		if err := reader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, field, &sourceNotFoundError{fmt.Sprintf("%s: Secret %s/%s not found", field, ref.Namespace, ref.Name)}
			}
			return nil, field, fmt.Errorf("reading %s: %w", field, err)
		}
		data, ok := s.Data[ref.Key]
		if !ok {
			return nil, field, &sourceNotFoundError{fmt.Sprintf("%s: Secret %s/%s has no key %q", field, ref.Namespace, ref.Name, ref.Key)}
		}
		return data, field, nil
	default:
		ref := src.ConfigMapKeyRef
		field := "spec.caFrom.configMapKeyRef"
		cm := &corev1.ConfigMap{}
		if err := reader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, field, &sourceNotFoundError{fmt.Sprintf("%s: ConfigMap %s/%s not found", field, ref.Namespace, ref.Name)}
			}
			return nil, field, fmt.Errorf("reading %s: %w", field, err)
		}
		if data, ok := cm.Data[ref.Key]; ok {
			return []byte(data), field, nil
		}
		if data, ok := cm.BinaryData[ref.Key]; ok {
			return data, field, nil
		}
		return nil, field, &sourceNotFoundError{fmt.Sprintf("%s: ConfigMap %s/%s has no key %q", field, ref.Namespace, ref.Name, ref.Key)}
	}
}

// reconcileDelete withdraws the mirror from the nodes, waits until every running agent
// has removed its files, then releases the RegistryMirror.
func (r *RegistryMirrorReconciler) reconcileDelete(ctx context.Context, rm *v1alpha1.RegistryMirror) (ctrl.Result, error) {
	r.provisioned.Delete(rm.UID) // the repository stays in Nexus; nothing more to check
	if !controllerutil.ContainsFinalizer(rm, v1alpha1.RegistryMirrorFinalizer) {
		return ctrl.Result{}, nil
	}
	before := rm.DeepCopy()
	if err := r.releasePullSecrets(ctx, rm, nil); err != nil {
		return ctrl.Result{}, err
	}
	done, err := r.releaseNodes(ctx, rm)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !done {
		// RegistryNode updates bring the mirror back; the poll covers agents that died.
		return ctrl.Result{RequeueAfter: deletionPoll}, patchStatus(ctx, r.Client, before, rm)
	}
	controllerutil.RemoveFinalizer(rm, v1alpha1.RegistryMirrorFinalizer)
	if err := r.Client.Patch(ctx, rm, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	forgetMetrics(rm.Name)
	logf.FromContext(ctx).Info("RegistryMirror released")
	return ctrl.Result{}, nil
}
