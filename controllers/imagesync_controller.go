package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/imagesync"
	"github.com/regwire/regwire/internal/pullsecret"
	"github.com/regwire/regwire/internal/tagselect"
)

// imageSyncMirrorIndex indexes ImageSyncs by the RegistryMirror they target.
const imageSyncMirrorIndex = "spec.target.registryMirrorRef.name"

// ImageSync reasons beyond those of the API package.
const (
	ReasonSyncing           = "Syncing"
	ReasonSourceNotFound    = "SourceNotFound"
	ReasonSourceAuthFailed  = "SourceAuthFailed"
	ReasonSourceUnreachable = "SourceUnreachable"
	ReasonTargetAuthFailed  = "TargetAuthFailed"
	ReasonTargetUnreachable = "TargetUnreachable"
)

// maxImages bounds status.images.
const maxImages = 1000

// ImageSyncReconciler reconciles ImageSync objects: it checks the spec, resolves source and
// target, and runs copies on schedule in the background (see syncRunner).
//
// ImageSync has no finalizer: the images it copied stay in the target registry when it is
// deleted (a registry is not a cache), so there is nothing to clean up; a running copy is
// cancelled.
type ImageSyncReconciler struct {
	// Client reads and writes through the manager's cache.
	Client client.Client
	// APIReader reads Secrets straight from the API server.
	APIReader client.Reader
	// Recorder emits Events.
	Recorder recorder.EventRecorder
	// Jobs bounds concurrent tags within one ImageSync.
	Jobs int
	// ConcurrentSyncs bounds the ImageSyncs copying at once (default 16).
	ConcurrentSyncs int
	// ProgressInterval is how often status shows the progress of a copy under way
	// (default 10s).
	ProgressInterval time.Duration
	// Now returns the current time; tests set it.
	Now func() time.Time

	runner *syncRunner
	// cache is what the copies of all ImageSyncs remember: blobs in target repositories
	// (mounted rather than uploaded again) and the manifests of indexes.
	cache *imagesync.Cache
}

// +kubebuilder:rbac:groups=regwire.dev,resources=imagesyncs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=regwire.dev,resources=imagesyncs/status,verbs=get;update;patch

// SetupWithManager registers the reconciler with mgr.
func (r *ImageSyncReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	r.runner = newSyncRunner(r.ConcurrentSyncs, r.ProgressInterval)
	r.cache = imagesync.NewCache(0)
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
		// A finished copy brings its ImageSync back to record the results.
		WatchesRawSource(source.Channel(r.runner.events, &handler.EnqueueRequestForObject{})).
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

// syncScope carries what one reconcile learns from phase to phase.
type syncScope struct {
	is       *v1alpha1.ImageSync
	selector *tagselect.Selector
	// mirror is the target RegistryMirror, nil for an explicit target image.
	mirror   *v1alpha1.RegistryMirror
	src, dst imagesync.Endpoint
}

// credentialRetry is when a copy that could not start for a missing or unusable Secret is
// tried again: Secrets are not watched (that would cache every Secret of the cluster).
const credentialRetry = time.Minute

// errReported ends a reconcile whose problem is already in the conditions.
var errReported = errors.New("reported in conditions")

// Reconcile checks one ImageSync and runs it on schedule.
func (r *ImageSyncReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	is := &v1alpha1.ImageSync{}
	if err := r.Client.Get(ctx, req.NamespacedName, is); err != nil {
		if apierrors.IsNotFound(err) {
			r.runner.stop(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !is.DeletionTimestamp.IsZero() {
		r.runner.stop(req.NamespacedName)
		return ctrl.Result{}, nil
	}

	before := is.DeepCopy()
	defer func() {
		is.Status.ObservedGeneration = is.Generation
		if err := patchStatus(ctx, r.Client, before, is); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
		}
	}()

	sc := &syncScope{is: is}
	for _, phase := range []func(context.Context, *syncScope) error{r.reconcileSpec, r.reconcileTarget} {
		if err := phase(ctx, sc); err != nil {
			r.runner.stop(req.NamespacedName)
			if errors.Is(err, errReported) {
				return ctrl.Result{}, nil // a change to the spec, a mirror or a Secret brings it back
			}
			return ctrl.Result{}, err
		}
	}
	return r.reconcileSync(ctx, sc)
}

// reconcileSpec checks what CEL cannot: the tag pattern and the semver range.
func (r *ImageSyncReconciler) reconcileSpec(_ context.Context, sc *syncScope) error {
	src := sc.is.Spec.Source
	sel, err := tagselect.New(tagselect.Spec{Tags: src.Tags, Pattern: src.TagPattern, Semver: src.Semver})
	if err != nil {
		r.fail(sc.is, v1alpha1.ReasonInvalidSpec, err.Error())
		return errReported
	}
	sc.selector = sel
	return nil
}

// fail sets Ready and Synced to False with reason, with an Event on the transition.
func (r *ImageSyncReconciler) fail(is *v1alpha1.ImageSync, reason, msg string) {
	if !isCondition(is.Status.Conditions, v1alpha1.ConditionReady, reason) {
		r.Recorder.Eventf(is, nil, corev1.EventTypeWarning, reason, "Sync", "%s", msg)
	}
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, reason, msg)
}

// reconcileTarget resolves the target repository from the cache: status.targetImage and the
// address to push to. Its CA and credentials are read only when a copy is due.
func (r *ImageSyncReconciler) reconcileTarget(ctx context.Context, sc *syncScope) error {
	is, t := sc.is, sc.is.Spec.Target
	if t.RegistryMirrorRef == nil {
		is.Status.TargetImage = string(t.Image)
		sc.dst = imagesync.Endpoint{Repository: string(t.Image), CA: []byte(t.CABundle), Insecure: t.Insecure}
		return nil
	}
	rm := &v1alpha1.RegistryMirror{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: t.RegistryMirrorRef.Name}, rm); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading RegistryMirror %s: %w", t.RegistryMirrorRef.Name, err)
		}
		is.Status.TargetImage = ""
		r.fail(is, v1alpha1.ReasonTargetNotFound, fmt.Sprintf("spec.target.registryMirrorRef: RegistryMirror %q not found; create it or fix the name", t.RegistryMirrorRef.Name))
		return errReported
	}
	is.Status.TargetImage = string(rm.Spec.Host) + "/" + t.Repository
	// The copy talks to the mirror's endpoint: its host, and its path (containerd's
	// override_path, e.g. a Nexus repository's /repository/my-docker/v2) in place of /v2.
	connect, prefix := string(rm.Spec.Host), ""
	if rm.Spec.Endpoint != "" {
		u, err := url.Parse(rm.Spec.Endpoint)
		if err != nil {
			r.fail(is, v1alpha1.ReasonInvalidSpec, fmt.Sprintf("RegistryMirror %s spec.endpoint: %v", rm.Name, err))
			return errReported
		}
		connect = u.Host
		if u.Path != "" && u.Path != "/" {
			prefix = path.Clean(u.Path)
		}
	}
	sc.mirror = rm
	sc.dst = imagesync.Endpoint{Repository: connect + "/" + t.Repository, PathPrefix: prefix, Insecure: rm.Spec.InsecureSkipVerify}
	return nil
}

// resolveSecrets reads what the copy needs from Secrets and ConfigMaps (straight from the
// API server): the target's CA and credentials (the RegistryMirror's, or the ImageSync's
// own) and the source's credentials. It runs only when a copy is due.
func (r *ImageSyncReconciler) resolveSecrets(ctx context.Context, sc *syncScope) error {
	is := sc.is
	if rm := sc.mirror; rm != nil {
		ca, field, err := mirrorCA(ctx, r.APIReader, rm)
		if err != nil {
			r.fail(is, ReasonTargetUnreachable, fmt.Sprintf("RegistryMirror %s: %s: %v", rm.Name, field, err))
			return errReported
		}
		sc.dst.CA = ca
		if ref := rm.Spec.CredentialsSecretRef; ref != nil {
			auth, err := r.credentialsIn(ctx, ref.Namespace, ref.Name, string(rm.Spec.Host), fmt.Sprintf("RegistryMirror %s spec.credentialsSecretRef", rm.Name))
			if err != nil {
				return r.failCredentials(is, err)
			}
			sc.dst.Auth = auth
		}
	} else if ref := is.Spec.Target.CredentialsSecretRef; ref != nil {
		auth, err := r.credentialsIn(ctx, is.Namespace, ref.Name, hostOf(string(is.Spec.Target.Image)), "spec.target.credentialsSecretRef")
		if err != nil {
			return r.failCredentials(is, err)
		}
		sc.dst.Auth = auth
	}
	s := is.Spec.Source
	sc.src = imagesync.Endpoint{Repository: string(s.Image), CA: []byte(s.CABundle), Insecure: s.Insecure}
	if s.CredentialsSecretRef != nil {
		auth, err := r.credentialsIn(ctx, is.Namespace, s.CredentialsSecretRef.Name, hostOf(string(s.Image)), "spec.source.credentialsSecretRef")
		if err != nil {
			return r.failCredentials(is, err)
		}
		sc.src.Auth = auth
	}
	return nil
}

// credentialsError is a credentials Secret that is missing or unusable.
type credentialsError struct {
	reason string
	err    error
}

func (e *credentialsError) Error() string { return e.err.Error() }

// credentialsIn reads a basic-auth or dockerconfigjson Secret in namespace ns into an
// authenticator for host. Problems the user must fix are *credentialsError.
func (r *ImageSyncReconciler) credentialsIn(ctx context.Context, ns, name, host, field string) (authn.Authenticator, error) {
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &credentialsError{ReasonCredentialsMissing, fmt.Errorf("%s: Secret %s/%s not found", field, ns, name)}
		}
		return nil, fmt.Errorf("reading %s: %w", field, err)
	}
	user, pass, err := pullsecret.Credentials(host, s, field)
	if err != nil {
		return nil, &credentialsError{ReasonCredentialsInvalid, err}
	}
	return &authn.Basic{Username: user, Password: pass}, nil
}

// failCredentials reports a credentials problem: its own reason when the Secret is missing
// or unusable, else the API error.
func (r *ImageSyncReconciler) failCredentials(is *v1alpha1.ImageSync, err error) error {
	var ce *credentialsError
	if errors.As(err, &ce) {
		r.fail(is, ce.reason, ce.Error())
		return errReported
	}
	return err
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
func (r *ImageSyncReconciler) reconcileSync(ctx context.Context, sc *syncScope) (ctrl.Result, error) {
	is := sc.is
	key := types.NamespacedName{Namespace: is.Namespace, Name: is.Name}
	if is.Spec.Suspend {
		r.runner.stop(key)
		showProgress(is, nil)
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true")
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true")
		is.Status.NextSyncTime = nil
		return ctrl.Result{}, nil
	}
	interval := time.Hour
	if is.Spec.Interval != nil {
		interval = is.Spec.Interval.Duration
	}
	now := r.Now()
	if run := r.runner.collect(key, is.Generation); run != nil {
		r.record(ctx, is, run)
		next := run.finished.Add(interval)
		is.Status.NextSyncTime = &metav1.Time{Time: next.Truncate(time.Second)}
		return ctrl.Result{RequeueAfter: next.Sub(now)}, nil
	}
	if r.runner.running(key, is.Generation) {
		showProgress(is, r.runner.progress(key, is.Generation))
		return ctrl.Result{}, nil
	}
	synced := apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionSynced)
	due := is.Status.LastSyncTime == nil || synced == nil || synced.ObservedGeneration != is.Generation ||
		synced.Reason == ReasonSyncing || synced.Reason == v1alpha1.ReasonSuspended ||
		is.Status.NextSyncTime == nil || !now.Before(is.Status.NextSyncTime.Time)
	if !due {
		return ctrl.Result{RequeueAfter: is.Status.NextSyncTime.Sub(now)}, nil
	}
	if err := r.resolveSecrets(ctx, sc); err != nil {
		if errors.Is(err, errReported) {
			return ctrl.Result{RequeueAfter: credentialRetry}, nil
		}
		return ctrl.Result{}, err
	}
	var platforms []v1.Platform
	for _, p := range is.Spec.Platforms {
		if pl, err := v1.ParsePlatform(string(p)); err == nil {
			platforms = append(platforms, *pl) // the CRD checks the form
		}
	}
	src, dst, sel, referrers := sc.src, sc.dst, sc.selector, is.Spec.Referrers
	opts := imagesync.Options{Jobs: r.Jobs, Platforms: platforms, Referrers: referrers, Cache: r.cache}
	r.runner.start(is, func(ctx context.Context, progress progressFunc) ([]imagesync.Result, error) {
		opts.Progress = progress
		eng, err := imagesync.New(src, dst, opts)
		if err != nil {
			return nil, err
		}
		tags, err := eng.Tags(ctx, sel)
		if err != nil {
			return nil, err
		}
		return eng.Sync(ctx, tags), nil
	})
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionUnknown, ReasonSyncing, "copying selected tags")
	if apimeta.FindStatusCondition(is.Status.Conditions, v1alpha1.ConditionReady) == nil || !apimeta.IsStatusConditionTrue(is.Status.Conditions, v1alpha1.ConditionReady) {
		setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonSyncing, "the first sync is running")
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

// record writes a finished run into status.
func (r *ImageSyncReconciler) record(ctx context.Context, is *v1alpha1.ImageSync, run *syncRun) {
	finished := metav1.Time{Time: run.finished.Truncate(time.Second)}
	is.Status.LastSyncTime = &finished
	took := run.finished.Sub(run.started)
	syncDuration.Observe(took.Seconds())
	if run.err != nil {
		reason := classify(run.err)
		syncErrors.WithLabelValues(reason).Inc()
		r.fail(is, reason, run.err.Error())
		return
	}
	prev := map[string]v1alpha1.ImageStatus{}
	for _, im := range is.Status.Images {
		prev[im.Tag] = im
	}
	var images []v1alpha1.ImageStatus
	var failed []imagesync.Result
	ok, copied := 0, 0
	var bytes int64
	for _, res := range run.results {
		im := v1alpha1.ImageStatus{Tag: res.Tag, SourceDigest: res.SourceDigest, TargetDigest: res.TargetDigest, Bytes: res.Bytes}
		switch {
		case res.Err != nil:
			im.Error = res.Err.Error()
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
		if len(images) < maxImages {
			images = append(images, im)
		}
	}
	is.Status.Images = images
	is.Status.TagsSummary = fmt.Sprintf("%d/%d", ok, len(run.results))
	syncBytes.WithLabelValues(is.Namespace, is.Name).Add(float64(bytes))
	if len(failed) > 0 {
		reason := classify(failed[0].Err)
		syncErrors.WithLabelValues(reason).Add(float64(len(failed)))
		r.fail(is, reason, fmt.Sprintf("%d of %d tag(s) failed; %s: %v", len(failed), len(run.results), failed[0].Tag, failed[0].Err))
		return
	}
	msg := fmt.Sprintf("%d tag(s) up to date in the target, %d copied", ok, copied)
	if copied > 0 {
		r.Recorder.Eventf(is, nil, corev1.EventTypeNormal, v1alpha1.ReasonSyncSucceeded, "Sync", "copied %d tag(s) (%d bytes) in %s", copied, bytes, took.Round(time.Millisecond))
	}
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionSynced, metav1.ConditionTrue, v1alpha1.ReasonSyncSucceeded, msg)
	setCondition(&is.Status.Conditions, is.Generation, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSyncSucceeded, msg)
	logf.FromContext(ctx).V(1).Info("Sync recorded", "tags", len(run.results), "copied", copied)
}

// classify turns a copy error into a condition reason.
func classify(err error) string {
	var se *imagesync.SideError
	if !errors.As(err, &se) {
		return v1alpha1.ReasonSyncFailed
	}
	switch {
	case se.Side == "source" && (se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden):
		return ReasonSourceAuthFailed
	case se.Side == "source" && se.StatusCode == http.StatusNotFound:
		return ReasonSourceNotFound
	case se.Side == "source" && se.StatusCode == 0:
		return ReasonSourceUnreachable
	case se.Side == "target" && (se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden):
		return ReasonTargetAuthFailed
	case se.Side == "target" && se.StatusCode == 0:
		return ReasonTargetUnreachable
	}
	return v1alpha1.ReasonSyncFailed
}
