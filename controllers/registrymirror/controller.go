// Package registrymirror is the RegistryMirror controller: it checks the mirror's CA and
// client certificate, publishes the mirror for the node agents and aggregates their
// reports, keeps pull secrets in the selected namespaces, and provisions the Nexus
// repository; one phase, and one condition, for each.
package registrymirror

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/controllers/internal/credentials"
	"github.com/regwire/regwire/internal/cabundle"
)

// caExpiryWarning is how long before a CA certificate expires the controller starts warning.
const caExpiryWarning = 30 * 24 * time.Hour

// Reconciler reconciles RegistryMirror objects.
type Reconciler struct {
	// Client reads and writes through the manager's cache.
	Client client.Client
	// APIReader reads ConfigMaps named by caFrom, and Secrets right after regwire wrote
	// them, directly from the API server.
	APIReader client.Reader
	// Secrets holds the Secrets this controller reads (package controllers' newSecretCache:
	// all of the namespaces a mirror may name Secrets in, and the pull secrets it made) and
	// informs it of their changes; the manager caches no other Secret.
	Secrets cache.Cache
	// Recorder emits Events.
	Recorder recorder.EventRecorder
	// Clock tells the time; tests set a fake one.
	Clock clock.PassiveClock
	// Namespace is the operator's namespace, where mirrors are published for the agents.
	Namespace string
	// SecretNamespaces are where a mirror's Secrets may be, besides Namespace.
	SecretNamespaces []string
	// AgentReportRate bounds the agents' reports a second after a change of a mirror
	// (nodeconfig.ReportWindow); 0 or less publishes no window.
	AgentReportRate float64

	// provisioned remembers when each mirror generation's repository was last found as
	// specified, so that reconciles between checks send Nexus nothing.
	provisioned sync.Map // types.UID -> provisionCheck
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

// SetupWithManager registers the reconciler with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.RegistryMirror{}, credentialsIndex, func(o client.Object) []string {
		var out []string
		spec := o.(*v1alpha1.RegistryMirror).Spec
		refs := []*v1alpha1.SecretReference{spec.CredentialsSecretRef, spec.ClientCertificateSecretRef}
		if spec.Provision != nil && spec.Provision.Nexus != nil {
			for _, px := range spec.Provision.Nexus.Proxies {
				refs = append(refs, px.CredentialsSecretRef)
			}
		}
		for _, ref := range refs {
			if ref != nil {
				out = append(out, ref.Namespace+"/"+ref.Name)
			}
		}
		return out
	})
	if err != nil {
		return fmt.Errorf("indexing RegistryMirrors by credentials: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		// The mirror's own status writes do not bring it back: only what it is asked to be.
		For(&v1alpha1.RegistryMirror{}, builder.WithPredicates(specOrMetadataChanged())).
		// A published ConfigMap edited or deleted by hand is put back.
		Owns(&corev1.ConfigMap{}).
		// A rotated credentials Secret, a pull secret changed by hand or a Nexus user's
		// Secret deleted brings its mirror back.
		WatchesRawSource(source.Kind(r.Secrets, &corev1.Secret{}, handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, s *corev1.Secret) []reconcile.Request {
			return r.mirrorsForSecret(ctx, s)
		}))).
		// New matching namespaces and ServiceAccounts get the pull secret.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.pullSecretMirrors), builder.WithPredicates(labelsChanged())).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(r.pullSecretMirrors), builder.WithPredicates(pullSecretsChanged())).
		// An agent report concerns the mirrors it names; node changes can concern every mirror.
		Watches(&v1alpha1.RegistryNode{}, reportsInBatches()).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.allMirrors), builder.WithPredicates(nodeSelectionChanged())).
		Named("registrymirror").
		Complete(r)
}

// reportBatch is how long the agents' reports of a burst are gathered before a mirror
// aggregates them. At thousands of nodes reports arrive all the time; each would otherwise
// be a reconcile of every mirror it names.
const reportBatch = 2 * time.Second

// reportsInBatches enqueues the mirrors a RegistryNode event concerns (those its old and new
// report name) reportBatch later: the queue keeps one entry per mirror, so a burst of
// reports is one reconcile.
func reportsInBatches() handler.Funcs {
	enqueue := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		for _, o := range objs {
			for _, req := range mirrorsInReport(context.Background(), o) {
				q.AddAfter(req, reportBatch)
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, e.Object)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, e.Object)
		},
	}
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
func (r *Reconciler) allMirrors(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.mirrorRequests(ctx, nil)
}

// mirrorRequests lists the mirrors matching opts from the cache and, when keep is set, keeps
// those it accepts.
func (r *Reconciler) mirrorRequests(ctx context.Context, keep func(*v1alpha1.RegistryMirror) bool, opts ...client.ListOption) []reconcile.Request {
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

// credentialsIndex indexes RegistryMirrors by "namespace/name" of the Secrets they read:
// credentials, client certificate, and the upstream credentials of Nexus proxies.
const credentialsIndex = "spec.credentialsSecretRef"

// mirrorsForSecret maps a Secret to the mirrors using it as credentials, or to the mirror
// whose pull secret or Nexus user's password it is.
func (r *Reconciler) mirrorsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	if name := o.GetAnnotations()[pullSecretMirrorAnnotation]; name != "" && (o.GetLabels()[PullSecretMirrorLabel] != "" || o.GetLabels()[nexusUserLabel] != "") {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return r.mirrorRequests(ctx, nil, client.MatchingFields{credentialsIndex: o.GetNamespace() + "/" + o.GetName()})
}

// pullSecretMirrors enqueues the mirrors that ask for pull secrets.
func (r *Reconciler) pullSecretMirrors(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.mirrorRequests(ctx, func(rm *v1alpha1.RegistryMirror) bool { return rm.Spec.PullSecrets != nil })
}

// specOrMetadataChanged passes RegistryMirror events but updates of the status alone (which
// the controller writes itself): a new generation, labels, annotations, finalizers or a
// deletion.
func specOrMetadataChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{},
		predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp()) ||
				!slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
		}})
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
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
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
		conditions.SetReadySummary(&rm.Status.Conditions, rm.Generation,
			v1alpha1.ConditionCAValid, v1alpha1.ConditionClientCertificateReady, v1alpha1.ConditionNodesReady,
			v1alpha1.ConditionPullSecretsReady, v1alpha1.ConditionProvisioned)
		conditions.SetProgress(&rm.Status.Conditions, rm.Generation)
		rm.Status.ObservedGeneration = rm.Generation
		if err := conditions.PatchStatus(ctx, r.Client, before, rm); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
		}
	}()

	// Each phase owns one condition: a problem the user must fix comes back as a
	// *conditions.Error and lands there; other errors are retried with backoff.
	var res ctrl.Result
	var errs []error
	sc := &mirrorScope{rm: rm}
	for _, p := range []struct {
		condition string
		run       func(context.Context, *mirrorScope) (ctrl.Result, error)
	}{
		{v1alpha1.ConditionCAValid, r.reconcileCA},
		{v1alpha1.ConditionClientCertificateReady, r.reconcileClientCertificate},
		{v1alpha1.ConditionNodesReady, r.reconcileNodes},
		// Before pull secrets: they are built from the pull user provisioning makes.
		{v1alpha1.ConditionProvisioned, r.reconcileProvision},
		{v1alpha1.ConditionPullSecretsReady, r.reconcilePullSecrets},
	} {
		phaseRes, err := p.run(ctx, sc)
		phaseRes, err = conditions.Report(&rm.Status.Conditions, rm.Generation, p.condition, phaseRes, err)
		errs = append(errs, err)
		res = conditions.LowestRequeue(res, phaseRes)
	}
	return res, kerrors.NewAggregate(errs)
}

// mirrorScope carries what one reconcile of a RegistryMirror learns from phase to phase.
type mirrorScope struct {
	rm *v1alpha1.RegistryMirror
	// ca is the resolved CA bundle (nil for system roots).
	ca []byte
	// caUsable is true when its CA checked out (or TLS verification is off on purpose);
	// clientCertUsable when its client certificate did (or none is asked for). Nodes are
	// given the mirror only when both are.
	caUsable, clientCertUsable bool
	// clientCert is the digest of the client certificate delivered to the agents ("" for
	// none).
	clientCert string
}

// reconcileCA checks the CA bundle and records its expiry in status.
func (r *Reconciler) reconcileCA(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	rm.Status.CANotAfter = nil
	caExpiryGauge.DeleteLabelValues(rm.Name) // set again below when there is a CA
	if rm.Spec.InsecureSkipVerify {
		r.setCA(rm, metav1.ConditionFalse, v1alpha1.ReasonInsecureSkipVerify,
			"insecureSkipVerify is true: nodes do not verify the registry's certificate; set caBundle or caFrom and remove insecureSkipVerify",
			"TLS verification is off for %s; give the registry's CA in caBundle or caFrom instead", rm.Spec.Host)
		sc.caUsable = true
		return ctrl.Result{}, nil
	}
	pemData, field, err := credentials.MirrorCA(ctx, r.reader(), r.secretScope(), rm)
	if e, ok := conditions.Reported(err); ok {
		return ctrl.Result{}, e.Retry(time.Minute) // caFrom objects are read, not watched: look again soon
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if pemData == nil {
		r.setCA(rm, metav1.ConditionTrue, v1alpha1.ReasonSystemRoots, "no caBundle or caFrom: nodes verify the registry with their system roots", "")
		sc.caUsable = true
		return ctrl.Result{}, nil
	}
	bundle, err := cabundle.Parse(pemData)
	if err != nil {
		return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonCAInvalid, "%s: %v", field, err)
	}
	notAfter, now := bundle.NotAfter(), r.Clock.Now()
	rm.Status.CANotAfter = &metav1.Time{Time: notAfter}
	caExpiryGauge.WithLabelValues(rm.Name).Set(float64(notAfter.Unix()))
	if c := bundle.Expired(now); c != nil {
		return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonCAExpired, "%s: certificate %q expired at %s; give a current CA",
			field, c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339))
	}
	msg := fmt.Sprintf("%d certificate(s), first expiry %s", len(bundle.Certificates), notAfter.UTC().Format(time.RFC3339))
	if left := notAfter.Sub(now); left < caExpiryWarning {
		r.setCA(rm, metav1.ConditionTrue, v1alpha1.ReasonCAExpiringSoon, msg+fmt.Sprintf(" (in %s: renew the CA)", left.Round(time.Hour)),
			"%s: a CA certificate expires at %s", field, notAfter.UTC().Format(time.RFC3339))
	} else {
		r.setCA(rm, metav1.ConditionTrue, v1alpha1.ReasonCAValid, msg, "")
	}
	sc.ca, sc.caUsable = pemData, true
	return ctrl.Result{RequeueAfter: nextCACheck(notAfter.Sub(now))}, nil
}

// setCA sets CAValid; with an event format, a Warning Event tells of the change when the
// condition did not have this reason yet.
func (r *Reconciler) setCA(rm *v1alpha1.RegistryMirror, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg, eventFormat string, eventArgs ...any) {
	if eventFormat != "" && !conditions.Has(rm.Status.Conditions, v1alpha1.ConditionCAValid, reason) {
		r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, string(reason), "Validate", eventFormat, eventArgs...)
	}
	conditions.Set(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionCAValid, status, reason, msg)
}

// nextCACheck is when the CA condition next changes by itself: when the first certificate
// enters its last 30 days, or when it expires.
func nextCACheck(left time.Duration) time.Duration {
	if left > caExpiryWarning {
		return left - caExpiryWarning + time.Second
	}
	return left + time.Second
}

// reconcileDelete withdraws the mirror from the nodes, waits until every running agent
// has removed its files, then releases the RegistryMirror.
func (r *Reconciler) reconcileDelete(ctx context.Context, rm *v1alpha1.RegistryMirror) (ctrl.Result, error) {
	r.provisioned.Delete(rm.UID) // the repository stays in Nexus (its users do not); nothing more to check
	if !controllerutil.ContainsFinalizer(rm, v1alpha1.RegistryMirrorFinalizer) {
		return ctrl.Result{}, nil
	}
	before := rm.DeepCopy()
	if err := r.releasePullSecrets(ctx, rm, nil); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releaseClientCertificate(ctx, rm); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releaseProvisionedUsers(ctx, rm); err != nil {
		return ctrl.Result{}, err
	}
	done, err := r.releaseNodes(ctx, rm)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releaseCABundles(ctx, rm, ""); err != nil {
		return ctrl.Result{}, err
	}
	if !done {
		// RegistryNode updates bring the mirror back; the poll covers agents that died.
		return ctrl.Result{RequeueAfter: deletionPoll}, conditions.PatchStatus(ctx, r.Client, before, rm)
	}
	controllerutil.RemoveFinalizer(rm, v1alpha1.RegistryMirrorFinalizer)
	if err := r.Client.Patch(ctx, rm, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	forgetMetrics(rm.Name)
	logf.FromContext(ctx).Info("RegistryMirror released")
	return ctrl.Result{}, nil
}

// reader reads a mirror's Secrets from the Secret cache, anything else (caFrom ConfigMaps)
// from the API server; a Secret the cache does not hold (yet: regwire may just have written
// it) is asked of the API server too.
func (r *Reconciler) reader() client.Reader {
	return secretsFirst{secrets: r.Secrets, rest: r.APIReader}
}

type secretsFirst struct{ secrets, rest client.Reader }

func (s secretsFirst) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		err := s.secrets.Get(ctx, key, obj, opts...)
		if !apierrors.IsNotFound(err) {
			return err
		}
	}
	return s.rest.Get(ctx, key, obj, opts...)
}

func (s secretsFirst) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*corev1.SecretList); ok {
		return s.secrets.List(ctx, list, opts...)
	}
	return s.rest.List(ctx, list, opts...)
}

// secretScope is where this mirror's Secrets may be read from.
func (r *Reconciler) secretScope() credentials.Scope {
	return credentials.NewScope(r.Namespace, r.SecretNamespaces...)
}
