// Package imagesync is the ImageSync controller: it checks an ImageSync's spec, resolves
// its target, and runs copies on schedule in the background (runner), recording each
// tag's result in status.
package imagesync

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
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
	"github.com/regwire/regwire/controllers/internal/shards"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/repopattern"
	"github.com/regwire/regwire/internal/tagselect"
)

// imageSyncMirrorIndex indexes ImageSyncs by the RegistryMirror they target.
const imageSyncMirrorIndex = "spec.target.registryMirrorRef.name"

// maxImages bounds status.images, and maxImageError each tag's error and the error a
// condition quotes (the CRD's bounds: a status the API server refuses would lose the whole
// run's results; and a registry's answer, whatever it holds, reaches status only that far).
const (
	maxImages     = 1000
	maxImageError = 1024
	// maxFailingShown bounds status.images of a prefix sync, which lists failures only.
	maxFailingShown = 20
)

// Reconciler reconciles ImageSync objects: it checks the spec, resolves source and
// target, and runs copies on schedule in the background (see syncRunner).
//
// ImageSync has no finalizer: the images it copied stay in the target registry when it is
// deleted (a registry is not a cache), so there is nothing to clean up; a running copy is
// cancelled.
type Reconciler struct {
	// Client reads and writes through the manager's cache.
	Client client.Client
	// APIReader reads Secrets straight from the API server.
	APIReader client.Reader
	// Recorder emits Events.
	Recorder recorder.EventRecorder
	// Jobs bounds the registry operations of one ImageSync's copy (default
	// imagecopy.DefaultJobs).
	Jobs int
	// ConcurrentSyncs bounds the ImageSyncs copying at once (default 16).
	ConcurrentSyncs int
	// ConcurrentSyncsPerNamespace bounds the ImageSyncs of one namespace copying at once
	// (default half of ConcurrentSyncs), so that one tenant never takes every slot.
	ConcurrentSyncsPerNamespace int
	// ProgressInterval is how often status shows the progress of a copy under way
	// (default 10s).
	ProgressInterval time.Duration
	// Namespace is the operator's namespace, whose ImageSyncs may copy into any
	// RegistryMirror; other namespaces only where a mirror's spec.imageSyncs allows them.
	Namespace string
	// SecretNamespaces are where a mirror's Secrets may be, besides Namespace.
	SecretNamespaces []string
	// Bounds are what a registry may make a copy do (imagecopy's defaults where zero).
	Bounds imagecopy.Bounds
	// Clock tells the time; tests set a fake one.
	Clock clock.PassiveClock
	// Shards, when set, shares the ImageSyncs among the manager's replicas: this one
	// reconciles and copies only those whose UID falls into a shard it holds, on every
	// replica rather than the leader alone. Nil: the leader does all of them.
	Shards *shards.Coordinator

	runner *syncRunner
	// failures counts the consecutive failed runs of each ImageSync's generation, for
	// retryAfterFailure.
	failures sync.Map // types.NamespacedName → failureCount
	// notes hold what each ImageSync's last run left out of the source's tags and, for a
	// prefix, counted of its repositories, for its status.
	notes sync.Map // types.NamespacedName → runNotes
	// cache is what the copies of all ImageSyncs remember: blobs in target repositories
	// (mounted rather than uploaded again) and the manifests of indexes.
	cache *imagecopy.Cache
	// queue is the controller's work queue once it has started (shards gained are
	// reconciled through it).
	queue struct {
		sync.Mutex
		q workqueue.TypedRateLimitingInterface[reconcile.Request]
	}
}

// +kubebuilder:rbac:groups=regwire.dev,resources=imagesyncs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=regwire.dev,resources=imagesyncs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=system,resources=configmaps,verbs=get;list;create;update;delete

// SetupWithManager registers the reconciler with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.runner = newSyncRunner(r.ConcurrentSyncs, r.ConcurrentSyncsPerNamespace, r.ProgressInterval)
	r.cache = imagecopy.NewCache(0)
	r.cache.Rates.Observe = func(registry string, remaining, _ int) {
		sourceRateLimitRemaining.WithLabelValues(registry).Set(float64(remaining))
	}
	opts := controller.Options{}
	if r.Shards != nil {
		r.runner.leader = false
		opts.NeedLeaderElection = ptr.To(false)
		r.Shards.Busy = func(s int) bool { return r.runner.copyingWhere(r.inShards(s)) }
		r.Shards.OnChange = r.shardsChanged
		if err := mgr.Add(r.Shards); err != nil {
			return err
		}
	}
	// Copies run under the manager: they start when it has started (as leader, unless
	// sharded) and stop with it.
	if err := mgr.Add(r.runner); err != nil {
		return err
	}
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.ImageSync{}, imageSyncMirrorIndex, func(o client.Object) []string {
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
		Watches(&v1alpha1.RegistryMirror{}, handler.EnqueueRequestsFromMapFunc(r.syncsForMirror), builder.WithPredicates(mirrorChangedForSyncs())).
		// A namespace's labels decide which mirrors its ImageSyncs may use.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.syncsInNamespace), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// A finished copy brings its ImageSync back to record the results.
		WatchesRawSource(source.Channel(r.runner.events, &handler.EnqueueRequestForObject{})).
		// The queue itself, for the ImageSyncs of shards this replica comes to hold.
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			r.queue.Lock()
			defer r.queue.Unlock()
			r.queue.q = q
			return nil
		})).
		WithOptions(opts).
		Named("imagesync").
		Complete(r)
}

// inShards matches the UIDs that fall into one of shards.
func (r *Reconciler) inShards(shards ...int) func(types.UID) bool {
	return func(uid types.UID) bool { return slices.Contains(shards, r.shardOf(uid)) }
}

func (r *Reconciler) shardOf(uid types.UID) int { return shards.Of(string(uid), r.Shards.Shards) }

// shardsChanged stops the copies of the shards this replica no longer holds and brings
// back the ImageSyncs of those it has come to hold (due ones start; the others wait for
// their slot, which status.nextSyncTime keeps across replicas).
func (r *Reconciler) shardsChanged(ctx context.Context, gained, lost []int) {
	if len(lost) > 0 {
		r.runner.stopWhere(r.inShards(lost...))
	}
	if len(gained) == 0 {
		return
	}
	r.queue.Lock()
	q := r.queue.q
	r.queue.Unlock()
	if q == nil {
		return // the controller has not started: its first list brings every ImageSync
	}
	list := &v1alpha1.ImageSyncList{}
	if err := r.Client.List(ctx, list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing ImageSyncs of gained shards failed; the resync brings them")
		return
	}
	in := r.inShards(gained...)
	for i := range list.Items {
		if in(list.Items[i].UID) {
			q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
}

// mirrorChangedForSyncs passes the RegistryMirror changes its ImageSyncs read: its spec
// (a new generation), its Provisioned condition (a copy into Nexus waits for it) and its
// deletion; not the node counts and other status the mirror writes all the time, which
// would bring back every ImageSync that targets it.
func mirrorChangedForSyncs() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*v1alpha1.RegistryMirror), e.ObjectNew.(*v1alpha1.RegistryMirror)
		po := apimeta.FindStatusCondition(o.Status.Conditions, v1alpha1.ConditionProvisioned)
		pn := apimeta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionProvisioned)
		changed := (po == nil) != (pn == nil) || po != nil && (po.Status != pn.Status || po.Reason != pn.Reason || po.Message != pn.Message)
		return changed || !o.DeletionTimestamp.Equal(n.DeletionTimestamp)
	}})
}

// syncsForMirror maps a RegistryMirror to the ImageSyncs that target it.
func (r *Reconciler) syncsForMirror(ctx context.Context, o client.Object) []reconcile.Request {
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

// syncsInNamespace maps a Namespace to its ImageSyncs that target a RegistryMirror.
func (r *Reconciler) syncsInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1alpha1.ImageSyncList{}
	if err := r.Client.List(ctx, list, client.InNamespace(o.GetName())); err != nil {
		logf.FromContext(ctx).Error(err, "Listing ImageSyncs of a namespace failed", "namespace", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Spec.Target.RegistryMirrorRef != nil {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// syncScope carries what one reconcile learns from phase to phase.
type syncScope struct {
	is *v1alpha1.ImageSync
	// mirror is the target RegistryMirror, nil for an explicit target image.
	mirror *v1alpha1.RegistryMirror
	plan   imagecopy.Plan
	// recorded is a finished run whose results this reconcile put into status; the runner
	// forgets it once the status patch has landed.
	recorded *syncRun
}

// credentialRetry is when a copy that could not start for a missing or unusable Secret is
// tried again: Secrets are not watched (that would cache every Secret of the cluster).
const credentialRetry = time.Minute

// Reconcile checks one ImageSync and runs it on schedule.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	is := &v1alpha1.ImageSync{}
	if err := r.Client.Get(ctx, req.NamespacedName, is); err != nil {
		if apierrors.IsNotFound(err) {
			r.runner.stop(req.NamespacedName)
			r.failures.Delete(req.NamespacedName)
			r.notes.Delete(req.NamespacedName)
			// Whether it pruned is gone with its spec: the delete is asked for every
			// ImageSync (one request, NotFound for most), since a record left behind
			// would keep its digests from every other ImageSync's prune for good.
			if err := r.records().forget(ctx, req.NamespacedName); err != nil {
				return ctrl.Result{}, err
			}
			forgetMetrics(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !is.DeletionTimestamp.IsZero() {
		r.runner.stop(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	r.runner.stopOther(req.NamespacedName, is.UID)
	if r.Shards != nil && !r.Shards.Owns(string(is.UID)) {
		// Another replica's, or nobody's for a moment: the replica that takes its shard
		// brings it back.
		r.runner.stop(req.NamespacedName)
		forgetMetrics(req.NamespacedName)
		return ctrl.Result{}, nil
	}

	before := is.DeepCopy()
	sc := &syncScope{is: is}
	defer func() {
		conditions.SetProgress(&is.Status.Conditions, is.Generation)
		is.Status.ObservedGeneration = is.Generation
		if err := conditions.PatchStatus(ctx, r.Client, before, is); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
			return // a recorded run stays with the runner, to be recorded again
		}
		if sc.recorded != nil {
			r.runner.forget(req.NamespacedName, sc.recorded)
		}
	}()

	// A problem the user must fix comes back as a *conditions.Error: it lands in Ready and
	// Synced (with an Event when the reason is new), and stops a copy under way.
	var res ctrl.Result
	err := r.reconcilePlan(ctx, sc)
	if err == nil {
		res, err = r.reconcileSync(ctx, sc)
	}
	if e, ok := conditions.Reported(err); ok {
		r.runner.stop(req.NamespacedName)
		r.fail(is, e.Reason, e.Message, e.Stalled)
		return ctrl.Result{RequeueAfter: e.RetryAfter}, nil
	}
	return res, err
}

// reconcilePlan resolves the target (a RegistryMirror from the cache, or the explicit
// image) and checks what CEL cannot (the tag pattern, the semver range): the copy's plan
// and status.targetImage. Its CA and credentials are read only when a copy is due.
func (r *Reconciler) reconcilePlan(ctx context.Context, sc *syncScope) error {
	is := sc.is
	if ref := is.Spec.Target.RegistryMirrorRef; ref != nil {
		rm := &v1alpha1.RegistryMirror{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: ref.Name}, rm); err != nil {
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("reading RegistryMirror %s: %w", ref.Name, err)
			}
			is.Status.TargetImage = ""
			return conditions.Errorf(v1alpha1.ReasonTargetNotFound,
				"spec.target.registryMirrorRef: RegistryMirror %q not found; create it or fix the name", ref.Name)
		}
		if rm.Spec.Provision != nil && rm.Spec.Provision.Nexus != nil {
			// Nexus refuses pushes to a repository it does not hold: wait for the mirror to
			// provision it (its status change brings this ImageSync back).
			if c := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionProvisioned); c == nil || c.Status != metav1.ConditionTrue {
				why := "not yet reported"
				if c != nil {
					why = c.Reason + ": " + c.Message
				}
				return conditions.Errorf(v1alpha1.ReasonTargetNotProvisioned,
					"RegistryMirror %s has not provisioned Nexus repository %s (Provisioned: %s)", rm.Name, rm.Spec.Provision.Nexus.Repository, why)
			}
		}
		if err := r.allowed(ctx, is, rm); err != nil {
			return err
		}
		sc.mirror = rm
	}
	plan, err := imagecopy.PlanFor(&is.Spec, sc.mirror)
	if err != nil {
		return conditions.Stalledf(v1alpha1.ReasonInvalidSpec, "%v", err)
	}
	sc.plan = plan
	is.Status.TargetImage = plan.TargetImage
	return nil
}

// allowed checks that the RegistryMirror lets this ImageSync copy into it with its
// credentials: the operator's own namespace may always; any other only when the mirror's
// spec.imageSyncs selects it, and only into a repository its patterns give the namespace.
// A refusal costs no request to either registry.
func (r *Reconciler) allowed(ctx context.Context, is *v1alpha1.ImageSync, rm *v1alpha1.RegistryMirror) error {
	if is.Namespace == r.Namespace {
		return nil
	}
	policy := rm.Spec.ImageSyncs
	if policy == nil {
		return conditions.Stalledf(v1alpha1.ReasonTargetNotAllowed,
			"RegistryMirror %s takes ImageSyncs from namespace %s only (its spec.imageSyncs is unset); its owner can allow namespace %s with spec.imageSyncs.namespaceSelector and repositories",
			rm.Name, r.Namespace, is.Namespace)
	}
	selector, err := metav1.LabelSelectorAsSelector(&policy.NamespaceSelector)
	if err != nil {
		return conditions.Stalledf(v1alpha1.ReasonTargetNotAllowed, "RegistryMirror %s spec.imageSyncs.namespaceSelector: %v", rm.Name, err)
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: is.Namespace}, ns); err != nil {
		return fmt.Errorf("reading namespace %s: %w", is.Namespace, err)
	}
	if !selector.Matches(labels.Set(ns.Labels)) {
		return conditions.Stalledf(v1alpha1.ReasonTargetNotAllowed,
			"RegistryMirror %s spec.imageSyncs.namespaceSelector (%s) does not select namespace %s; its owner can label the namespace or widen the selector",
			rm.Name, selector, is.Namespace)
	}
	match := repopattern.MatchAny[v1alpha1.RepositoryPattern]
	if is.Spec.Source.Repositories == v1alpha1.RepositoryScopePrefix {
		// A prefix sync writes below its target repository: each one is checked as the copy
		// reaches it; here, that the patterns leave it something to write.
		match = repopattern.MatchAnyAtOrBelow[v1alpha1.RepositoryPattern]
	}
	if !match(policy.Repositories, is.Namespace, is.Spec.Target.Repository) {
		return conditions.Stalledf(v1alpha1.ReasonTargetNotAllowed,
			"spec.target.repository %q is not one RegistryMirror %s lets namespace %s write (spec.imageSyncs.repositories: %s); choose a repository those patterns match",
			is.Spec.Target.Repository, rm.Name, is.Namespace, strings.ReplaceAll(fmt.Sprint(policy.Repositories), repopattern.Namespace, is.Namespace))
	}
	return nil
}

// fail sets Ready and Synced to False with reason, with an Event on the transition; a
// stalled problem (only a person can fix it) stalls the ImageSync.
func (r *Reconciler) fail(is *v1alpha1.ImageSync, reason v1alpha1.ConditionReason, msg string, stalled bool) {
	if !conditions.Has(is.Status.Conditions, v1alpha1.ConditionReady, reason) {
		r.Recorder.Eventf(is, nil, corev1.EventTypeWarning, string(reason), "Sync", "%s", msg)
	}
	conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, reason, msg)
	if stalled {
		conditions.Stall(&is.Status.Conditions, is.Generation, reason, msg)
	}
}

// resolveSecrets reads what the copy needs from Secrets and ConfigMaps (straight from the
// API server): the target's CA and credentials (the RegistryMirror's — its Nexus push user
// when regwire manages the users — or the ImageSync's own) and the source's credentials. It runs only when a copy is due. Problems the user
// must fix are *conditions.Error, retried after credentialRetry.
func (r *Reconciler) resolveSecrets(ctx context.Context, sc *syncScope) error {
	err := r.readSecrets(ctx, sc)
	if e, ok := conditions.Reported(err); ok {
		return e.Retry(credentialRetry)
	}
	return err
}

func (r *Reconciler) readSecrets(ctx context.Context, sc *syncScope) error {
	is, plan := sc.is, &sc.plan
	if rm := sc.mirror; rm != nil {
		var err error
		if plan.Target.CA, plan.Target.Auth, err = credentials.MirrorPush(ctx, r.APIReader, credentials.NewScope(r.Namespace, r.SecretNamespaces...), r.Namespace, rm); err != nil {
			return err
		}
	} else if ref := is.Spec.Target.CredentialsSecretRef; ref != nil {
		var err error
		if plan.Target.Auth, err = credentials.BoundAuthenticator(ctx, r.APIReader, is.Namespace, ref.Name, hostOf(string(is.Spec.Target.Image)), "spec.target.credentialsSecretRef"); err != nil {
			return err
		}
	}
	if v := is.Spec.Verify; v != nil {
		named := map[string][]byte{}
		for i, k := range v.Keys {
			secret, ref, field := k.SecretKeyRef != nil, k.SecretKeyRef, fmt.Sprintf("spec.verify.keys[%d].secretKeyRef", i)
			if !secret {
				ref, field = k.ConfigMapKeyRef, fmt.Sprintf("spec.verify.keys[%d].configMapKeyRef", i)
			}
			data, err := credentials.KeyData(ctx, r.APIReader, secret, is.Namespace, ref.Name, ref.Key, field, v1alpha1.ReasonVerifyKeyInvalid)
			if err != nil {
				return err
			}
			named[field] = data
		}
		keys, err := imagecopy.ParseKeys(named)
		if err != nil {
			return conditions.Errorf(v1alpha1.ReasonVerifyKeyInvalid, "%v", err)
		}
		plan.Options.Verify = keys
	}
	if ref := is.Spec.Source.CredentialsSecretRef; ref != nil {
		var err error
		if plan.Source.Auth, err = credentials.BoundAuthenticator(ctx, r.APIReader, is.Namespace, ref.Name, hostOf(string(is.Spec.Source.Image)), "spec.source.credentialsSecretRef"); err != nil {
			return err
		}
	}
	return nil
}

// hostOf returns the registry host of a repository reference ("docker.io" when it has none).
func hostOf(repo string) string {
	first, _, found := strings.Cut(repo, "/")
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		return "docker.io"
	}
	return first
}

// reconcileSync records a finished copy, starts one when due, and says when to come back.
func (r *Reconciler) reconcileSync(ctx context.Context, sc *syncScope) (ctrl.Result, error) {
	is := sc.is
	key := types.NamespacedName{Namespace: is.Namespace, Name: is.Name}
	if is.Spec.Suspend {
		r.runner.stop(key)
		showProgress(is, nil)
		conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true")
		conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true")
		is.Status.NextSyncTime = nil
		return ctrl.Result{}, nil
	}
	interval := time.Hour
	if is.Spec.Interval != nil {
		interval = is.Spec.Interval.Duration
	}
	now := r.Clock.Now()
	if run := r.runner.finished(key, is.Generation); run != nil {
		first := run.next.IsZero()
		failed := r.record(ctx, is, run, first)
		if first {
			run.next = nextSlot(is.UID, interval, run.started.Add(interval))
			if failed {
				run.next = run.finished.Add(r.retryAfterFailure(key, is.Generation, interval))
			} else {
				r.failures.Delete(key)
			}
		}
		is.Status.NextSyncTime = &metav1.Time{Time: run.next.Truncate(time.Second)}
		sc.recorded = run
		return ctrl.Result{RequeueAfter: run.next.Sub(now)}, nil
	}
	if r.runner.running(key, is.Generation) {
		showProgress(is, r.runner.progress(key, is.Generation))
		return ctrl.Result{}, nil
	}
	if next, ok := r.runner.notDueUntil(key, is.Generation); ok && now.Before(next) {
		// This replica recorded the last run; the cache may not show that status yet.
		return ctrl.Result{RequeueAfter: next.Sub(now)}, nil
	}
	synced := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionSynced)
	due := is.Status.LastSyncTime == nil || synced == nil || synced.ObservedGeneration != is.Generation ||
		synced.Reason == string(v1alpha1.ReasonSyncing) || synced.Reason == string(v1alpha1.ReasonSuspended) ||
		is.Status.NextSyncTime == nil || !now.Before(is.Status.NextSyncTime.Time)
	if !due {
		return ctrl.Result{RequeueAfter: is.Status.NextSyncTime.Sub(now)}, nil
	}
	if err := r.resolveSecrets(ctx, sc); err != nil {
		return ctrl.Result{}, err
	}
	plan := sc.plan
	plan.Options.Jobs, plan.Options.Cache, plan.Options.Bounds = r.Jobs, r.cache, r.Bounds
	plan.Options.Tenant = is.Namespace // blobs are mounted only from what this namespace wrote
	allow := r.allowUnder(is, sc.mirror)
	prune, uid := is.Spec.Prune.DeepCopy(), is.UID
	// key (computed above): the run reads nothing of is, which reconciles reuse.
	r.runner.start(is, func(ctx context.Context, progress progressFunc) ([]imagecopy.Result, error) {
		opts := plan.Options
		opts.Progress = progress
		if plan.Under != nil {
			return r.syncUnder(ctx, key, plan, opts, allow)
		}
		eng, err := imagecopy.New(plan.Source, plan.Target, opts)
		if err != nil {
			return nil, err
		}
		tags, left, err := eng.TagsCounted(ctx, plan.Selector)
		if err != nil {
			return nil, err
		}
		results := eng.Sync(ctx, tags)
		notes := runNotes{leftOut: left}
		if prune != nil {
			notes.prune, notes.pruned = r.prune(ctx, pruneRun{records: r.records(), key: key, uid: uid, spec: *prune, engine: eng,
				repository: plan.Target.Repository, now: r.Clock.Now()}, tags, results)
		}
		r.notes.Store(key, notes)
		return results, nil
	})
	conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionUnknown, v1alpha1.ReasonSyncing, "copying selected tags")
	if !apimeta.IsStatusConditionTrue(is.Status.Conditions, v1alpha1.ConditionReady) {
		conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSyncing, "the first sync is running")
	}
	return ctrl.Result{}, nil
}

// showProgress puts the progress of the tags being copied into status.images (adding the
// tags status does not list yet) and clears it from the others.
func showProgress(is *v1alpha1.ImageSync, progress map[string]v1alpha1.CopyProgress) {
	seen := map[string]bool{}
	for i := range is.Status.Images {
		im := &is.Status.Images[i]
		seen[im.Tag] = true
		if p, ok := progress[im.Tag]; ok {
			im.Copying = &p
		} else {
			im.Copying = nil
		}
	}
	tags := slices.Sorted(maps.Keys(progress))
	for _, tag := range tags {
		if !seen[tag] && len(is.Status.Images) < maxImages {
			p := progress[tag]
			is.Status.Images = append(is.Status.Images, v1alpha1.ImageStatus{Tag: tag, Copying: &p})
		}
	}
}

// record writes a finished run into status, and says whether it failed. Metrics and
// Events count the run the first time only.
func (r *Reconciler) record(ctx context.Context, is *v1alpha1.ImageSync, run *syncRun, first bool) bool {
	finished := metav1.Time{Time: run.finished.Truncate(time.Second)}
	is.Status.LastSyncTime = &finished
	took := run.finished.Sub(run.started)
	if first {
		syncDuration.Observe(took.Seconds())
	}
	if run.err != nil {
		reason, stalled := classify(run.err)
		if first {
			syncErrors.WithLabelValues(string(reason)).Inc()
		}
		r.fail(is, reason, conditions.Cut(run.err.Error(), maxImageError), stalled)
		return true
	}
	prev := map[string]v1alpha1.ImageStatus{}
	for _, im := range is.Status.Images {
		prev[im.Tag] = im
	}
	var images []v1alpha1.ImageStatus
	var failed []imagecopy.Result
	prefix := is.Spec.Source.Repositories == v1alpha1.RepositoryScopePrefix
	ok, copied := 0, 0
	var bytes int64
	for _, res := range run.results {
		im := v1alpha1.ImageStatus{Tag: res.Tag, SourceDigest: res.SourceDigest, TargetDigest: res.TargetDigest, Bytes: res.Bytes}
		switch {
		case res.Err != nil:
			im.Error = conditions.Cut(res.Err.Error(), maxImageError)
			im.TargetDigest, im.SyncedAt = prev[res.Tag].TargetDigest, prev[res.Tag].SyncedAt
			failed = append(failed, res)
		case res.UpToDate && prev[res.Tag].SyncedAt != nil && prev[res.Tag].TargetDigest == res.TargetDigest:
			im.SyncedAt, im.Bytes = prev[res.Tag].SyncedAt, prev[res.Tag].Bytes // unchanged: no status churn
			ok++
		default:
			im.SyncedAt = &finished
			ok++
			if !res.UpToDate {
				copied++
			}
		}
		bytes += res.Bytes
		switch {
		case prefix && im.Error != "" && len(images) < maxFailingShown: // thousands of repositories: the failing few
			images = append(images, im)
		case !prefix && len(images) < maxImages:
			images = append(images, im)
		}
	}
	is.Status.Images = images
	is.Status.TagsSummary = fmt.Sprintf("%d/%d", ok, len(run.results))
	is.Status.TagsLeftOut, is.Status.Repositories, is.Status.Prune = nil, nil, nil
	var leftOut string
	if v, found := r.notes.Load(client.ObjectKeyFromObject(is)); found {
		notes := v.(runNotes)
		if l := notes.leftOut; l.Excluded+l.Older+l.NotVersions > 0 {
			is.Status.TagsLeftOut = &v1alpha1.TagsLeftOut{Excluded: int32(l.Excluded), Older: int32(l.Older), NotVersions: int32(l.NotVersions)}
			leftOut = "; left out: " + l.String(int(is.Spec.Source.Newest))
		}
		is.Status.Prune = notes.prune
		if first && len(notes.pruned) > 0 {
			prunedTags.WithLabelValues(is.Namespace).Add(float64(len(notes.pruned)))
			shown := notes.pruned[:min(len(notes.pruned), maxShownPrune)]
			r.Recorder.Eventf(is, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonPruned), "Prune", "removed %d tag(s) it wrote and no longer selects: %s",
				len(notes.pruned), strings.Join(shown, ", "))
		}
		if p := notes.prune; first && p != nil && p.Error != "" {
			r.Recorder.Eventf(is, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonPruneFailed), "Prune", "%s", p.Error)
		}
		if c := notes.repos; c != nil {
			is.Status.Repositories = c
			leftOut = fmt.Sprintf(", in %d of %d repositories", c.Synced, c.Found) + leftOut
		}
	}
	if first {
		syncBytes.WithLabelValues(is.Namespace, is.Name).Add(float64(bytes))
	}
	if len(failed) > 0 {
		reason, stalled := classify(failed[0].Err)
		if first {
			syncErrors.WithLabelValues(string(reason)).Add(float64(len(failed)))
		}
		r.fail(is, reason, fmt.Sprintf("%d of %d tag(s) failed; %s: %s", len(failed), len(run.results), failed[0].Tag,
			conditions.Cut(failed[0].Err.Error(), maxImageError)), stalled)
		return true
	}
	msg := fmt.Sprintf("%d tag(s) up to date in the target, %d copied%s", ok, copied, leftOut)
	if copied > 0 && first {
		r.Recorder.Eventf(is, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonSyncSucceeded), "Sync", "copied %d tag(s) (%d bytes) in %s", copied, bytes, took.Round(time.Millisecond))
	}
	conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionTrue, v1alpha1.ReasonSyncSucceeded, msg)
	conditions.Set(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSyncSucceeded, msg)
	logf.FromContext(ctx).V(1).Info("Sync recorded", "tags", len(run.results), "copied", copied)
	return false
}

// nextSlot is the first time at or after earliest that the ImageSync's schedule fires. An
// ImageSync's syncs are interval apart at a phase of its own, a hash of its UID modulo the
// interval: ImageSyncs created together, or all due at once after a restart, spread over
// their interval instead of copying at once, and the phase never changes (no restart
// moves a sync closer to the last one than the interval). The first sync runs at creation;
// the second at the first slot an interval or more after it.
func nextSlot(uid types.UID, interval time.Duration, earliest time.Time) time.Time {
	if interval <= 0 {
		return earliest
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	phase := int64(h.Sum64() % uint64(interval))
	step := int64(interval)
	since := earliest.UnixNano() - phase
	k := since / step
	if k*step < since {
		k++
	}
	return time.Unix(0, k*step+phase)
}

// Failed copies are tried again sooner than the interval: after failureRetryBase, doubling
// with each consecutive failure up to failureRetryMax (and never later than the interval).
// A registry that was briefly unreachable (a name not yet in /etc/hosts, a restart) costs
// seconds, not an interval; one that stays down is asked at most every few minutes.
const (
	failureRetryBase = 15 * time.Second
	failureRetryMax  = 10 * time.Minute
)

type failureCount struct {
	generation int64
	n          int
}

// retryAfterFailure counts a failed run of key's generation and says when to try again; a
// new generation (the user changed the spec) starts the count again.
func (r *Reconciler) retryAfterFailure(key types.NamespacedName, generation int64, interval time.Duration) time.Duration {
	n := 0
	if v, ok := r.failures.Load(key); ok && v.(failureCount).generation == generation {
		n = v.(failureCount).n
	}
	r.failures.Store(key, failureCount{generation: generation, n: n + 1})
	return min(failureRetryBase<<min(n, 6), failureRetryMax, interval)
}

// classify turns a copy error into a condition reason, and says whether only a person can
// fix it: a registry refusing the credentials does not change its mind by itself.
func classify(err error) (reason v1alpha1.ConditionReason, stalled bool) {
	var unsigned *imagecopy.SignatureError
	if errors.As(err, &unsigned) {
		return v1alpha1.ReasonSignatureNotVerified, false
	}
	var rl *registryhttp.RateLimitError
	if errors.As(err, &rl) {
		return v1alpha1.ReasonSourceRateLimited, false
	}
	if e, ok := conditions.Reported(err); ok { // a repository of a prefix sync refused
		return e.Reason, e.Stalled
	}
	var se *imagecopy.SideError
	if !errors.As(err, &se) {
		return v1alpha1.ReasonSyncFailed, false
	}
	refused := se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden
	switch {
	case se.Side == "source" && refused:
		return v1alpha1.ReasonSourceAuthFailed, true
	case se.Side == "source" && se.StatusCode == http.StatusNotFound:
		return v1alpha1.ReasonSourceNotFound, false
	case se.Side == "source" && se.StatusCode == 0:
		return v1alpha1.ReasonSourceUnreachable, false
	case se.Side == "target" && refused:
		return v1alpha1.ReasonTargetAuthFailed, true
	case se.Side == "target" && se.StatusCode == 0:
		return v1alpha1.ReasonTargetUnreachable, false
	}
	return v1alpha1.ReasonSyncFailed, false
}

// runNotes is what a run learned besides its tags' results.
type runNotes struct {
	leftOut tagselect.LeftOut
	// repos counts the repositories of a prefix sync; nil for one repository.
	repos *v1alpha1.RepositoryCounts
	// prune is what spec.prune did, and pruned the tags it removed; nil without spec.prune.
	prune  *v1alpha1.PruneStatus
	pruned []string
}

// records are the ImageSyncs' ownership records, in the operator's namespace.
func (r *Reconciler) records() records {
	return records{reader: r.APIReader, writer: r.Client, namespace: r.Namespace}
}

// prune runs a sync's prune: a failure is the prune's status, not the sync's.
func (r *Reconciler) prune(ctx context.Context, p pruneRun, selected []string, results []imagecopy.Result) (*v1alpha1.PruneStatus, []string) {
	st, pruned, err := p.run(ctx, selected, results)
	if err != nil {
		if st == nil {
			st = &v1alpha1.PruneStatus{}
		}
		st.Error = conditions.Cut(err.Error(), maxImageError)
	}
	var removed []string
	for _, pr := range pruned {
		if pr.Removed && !p.spec.DryRun {
			removed = append(removed, pr.Tag)
		}
	}
	return st, removed
}

// syncUnder copies every repository below the plan's prefix, and notes what it left out
// and how many repositories it found, synced and failed.
func (r *Reconciler) syncUnder(ctx context.Context, key types.NamespacedName, plan imagecopy.Plan, opts imagecopy.Options, allow func(string) error) ([]imagecopy.Result, error) {
	under := *plan.Under
	under.Allow = allow
	repos, err := under.Sync(ctx, plan.Selector, opts)
	if err != nil {
		return nil, err
	}
	notes := runNotes{repos: &v1alpha1.RepositoryCounts{Found: int32(len(repos))}}
	for _, repo := range repos {
		notes.leftOut.Excluded += repo.LeftOut.Excluded
		notes.leftOut.Older += repo.LeftOut.Older
		notes.leftOut.NotVersions += repo.LeftOut.NotVersions
		failed := repo.Err != nil
		for _, res := range repo.Results {
			failed = failed || res.Err != nil
		}
		if failed {
			notes.repos.Failed++
		} else {
			notes.repos.Synced++
		}
	}
	r.notes.Store(key, notes)
	return imagecopy.Flatten(repos), nil
}

// allowUnder checks each repository a prefix sync writes against the RegistryMirror's
// spec.imageSyncs.repositories (nil when every repository is allowed: the operator's own
// namespace, or a target image of the ImageSync's own).
func (r *Reconciler) allowUnder(is *v1alpha1.ImageSync, rm *v1alpha1.RegistryMirror) func(string) error {
	if rm == nil || is.Namespace == r.Namespace || rm.Spec.ImageSyncs == nil {
		return nil
	}
	patterns, namespace := slices.Clone(rm.Spec.ImageSyncs.Repositories), is.Namespace
	return func(target string) error {
		_, repo, _ := strings.Cut(target, "/") // the mirror's endpoint host, then the path
		if !repopattern.MatchAny(patterns, namespace, repo) {
			return conditions.Stalledf(v1alpha1.ReasonTargetNotAllowed,
				"target repository %s is not one RegistryMirror %s lets namespace %s write (spec.imageSyncs.repositories: %s)",
				repo, rm.Name, namespace, strings.ReplaceAll(fmt.Sprint(patterns), repopattern.Namespace, namespace))
		}
		return nil
	}
}
