// Package inuse is the images-in-use controller: for each RegistryMirror with
// spec.imagesInUse, it copies every image that Pods of the selected namespaces run from a
// registry the mirror's mirrorOf names into the mirror, at the path the nodes' runtimes
// ask for it there, so that a lost upstream loses nothing. It owns status.imagesInUse.
//
// Pods are watched only once some mirror asks for images in use (a cluster that does not
// use it never lists a Pod), through a cache that keeps of each Pod its images alone.
package inuse

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
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
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/pullsecret"
)

// DefaultConcurrency is how many images in use are copied at once, across mirrors.
const DefaultConcurrency = 2

// Failed copies are tried again after retryBase, doubling up to retryMax.
const (
	retryBase = 15 * time.Second
	retryMax  = 10 * time.Minute
	// maxFailing bounds status.imagesInUse.failing.
	maxFailing = 20
	maxMessage = 1024
)

// Reconciler keeps the images in use at their mirrors.
type Reconciler struct {
	// Client reads through the manager's cache (RegistryMirrors, Namespaces, Pods) and
	// patches status.
	Client client.Client
	// APIReader reads Secrets and ConfigMaps (CA, credentials) straight from the API server.
	APIReader client.Reader
	// Recorder emits Events.
	Recorder recorder.EventRecorder
	// Namespace is the operator's namespace; SecretNamespaces where else a mirror's Secrets
	// may be.
	Namespace        string
	SecretNamespaces []string
	// Bounds are what a registry may make a copy do.
	Bounds imagecopy.Bounds
	// Concurrency bounds the images copied at once (DefaultConcurrency when not positive).
	Concurrency int
	// Clock tells the time; tests set a fake one.
	Clock clock.PassiveClock

	ctrl    controller.Controller
	cache   cache.Cache
	watched sync.Once
	copies  *copier

	mu sync.Mutex
	// images holds, per mirror, what is known of each image it keeps.
	images map[string]map[string]*imageState
}

// imageState is what is known of one image in use at one mirror.
type imageState struct {
	// ok: the last copy found or made it at the mirror, at checked.
	ok      bool
	checked time.Time
	// failures count the copies failed in a row; next is when to try again; message why.
	failures int
	next     time.Time
	message  string
	running  bool
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=regwire.dev,resources=registrymirrors/status,verbs=get;patch

// SetupWithManager registers the controller: RegistryMirrors, Namespaces' labels, finished
// copies; Pods once a mirror asks for them.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.images = map[string]map[string]*imageState{}
	r.cache = mgr.GetCache()
	r.copies = &copier{slots: make(chan struct{}, cmp.Or(max(r.Concurrency, 0), DefaultConcurrency)), done: make(chan event.GenericEvent, 64),
		cache: imagecopy.NewCache(0)}
	if err := mgr.Add(r.copies); err != nil {
		return err
	}
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.RegistryMirror{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.allMirrors), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WatchesRawSource(source.Channel(r.copies.done, &handler.EnqueueRequestForObject{})).
		Named("imagesinuse").
		Build(r)
	r.ctrl = c
	return err
}

// watchPods starts the Pod watch, once: new Pods, and Pods whose images change, bring back
// the mirrors keeping images in use.
func (r *Reconciler) watchPods() error {
	var err error
	r.watched.Do(func() {
		err = r.ctrl.Watch(source.Kind(r.cache, client.Object(&corev1.Pod{}), handler.EnqueueRequestsFromMapFunc(r.allMirrors), imagesChanged()))
	})
	return err
}

// imagesChanged passes new Pods and Pods whose images change (an ephemeral container).
func imagesChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return true },
		DeleteFunc:  func(event.DeleteEvent) bool { return false }, // an image kept stays kept
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Pod)
			n, ok2 := e.ObjectNew.(*corev1.Pod)
			return ok1 && ok2 && !slices.Equal(Images(o), Images(n))
		},
	}
}

// allMirrors maps any change to the mirrors that keep images in use (few per cluster).
func (r *Reconciler) allMirrors(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &v1alpha1.RegistryMirrorList{}
	if err := r.Client.List(ctx, list); err != nil {
		logf.FromContext(ctx).Error(err, "Listing RegistryMirrors failed")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Spec.ImagesInUse != nil {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// Images returns the images a Pod runs: containers, init and ephemeral containers, each once.
func Images(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.InitContainers {
		out = append(out, c.Image)
	}
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	for _, c := range p.Spec.EphemeralContainers {
		out = append(out, c.Image)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// PodImagesOnly is the cache's transform for Pods: of a Pod it keeps its name, namespace,
// UID and the images of its containers, which is all this controller reads.
func PodImagesOnly(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion}}
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.EphemeralContainers {
		out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image}})
	}
	return out, nil
}

// Reconcile finds the images in use a mirror keeps, starts the copies that are due, and
// writes status.imagesInUse.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rm := &v1alpha1.RegistryMirror{}
	if err := r.Client.Get(ctx, req.NamespacedName, rm); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := rm.DeepCopy()
	if rm.Spec.ImagesInUse == nil || !rm.DeletionTimestamp.IsZero() {
		r.forget(rm.Name)
		rm.Status.ImagesInUse = nil
		return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, before, rm)
	}
	if err := r.watchPods(); err != nil {
		return ctrl.Result{}, fmt.Errorf("watching Pods: %w", err)
	}
	if !r.copies.started() {
		return ctrl.Result{RequeueAfter: time.Second}, nil // this replica does not lead (yet)
	}
	wanted, proxied, err := r.imagesFor(ctx, rm)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	interval := time.Hour
	if d := rm.Spec.ImagesInUse.Interval; d != nil && d.Duration > 0 {
		interval = d.Duration
	}
	st := &v1alpha1.ImagesInUseStatus{Images: int32(len(wanted) + proxied), Proxied: int32(proxied)}
	next := now.Add(interval)
	r.mu.Lock()
	states := r.images[rm.Name]
	if states == nil {
		states = map[string]*imageState{}
		r.images[rm.Name] = states
	}
	maps.DeleteFunc(states, func(image string, _ *imageState) bool { _, ok := wanted[image]; return !ok })
	var due []string
	for _, image := range slices.Sorted(maps.Keys(wanted)) {
		s := states[image]
		if s == nil {
			s = &imageState{}
			states[image] = s
		}
		switch {
		case s.running:
		case s.ok && now.Before(s.checked.Add(interval)):
			next = minTime(next, s.checked.Add(interval))
		case !s.ok && now.Before(s.next):
			next = minTime(next, s.next)
		default:
			s.running = true
			due = append(due, image)
		}
		if s.ok {
			st.AtMirror++
		} else if s.message != "" && len(st.Failing) < maxFailing {
			st.Failing = append(st.Failing, v1alpha1.ImageInUseFailure{Image: image, Message: s.message})
		}
	}
	r.mu.Unlock()
	for _, image := range due {
		t := wanted[image]
		r.copies.start(rm, image, func(ctx context.Context) error { return r.copy(ctx, rm, image, t) }, r.finished)
	}
	rm.Status.ImagesInUse = st
	inUse.WithLabelValues(rm.Name, "images").Set(float64(st.Images))
	inUse.WithLabelValues(rm.Name, "atMirror").Set(float64(st.AtMirror))
	inUse.WithLabelValues(rm.Name, "notAtMirror").Set(float64(len(wanted) - int(st.AtMirror)))
	if err := conditions.PatchStatus(ctx, r.Client, before, rm); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: max(next.Sub(now), time.Second)}, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// forget drops what is known of a mirror's images.
func (r *Reconciler) forget(mirror string) {
	r.mu.Lock()
	delete(r.images, mirror)
	r.mu.Unlock()
	inUse.DeletePartialMatch(map[string]string{"mirror": mirror})
}

// target is where an image in use goes at the mirror: the upstream's path there.
type target struct {
	upstream string
	ref      name.Reference
	endpoint imagecopy.Endpoint // without CA and credentials
}

// imagesFor lists the images the selected namespaces' Pods run from upstreams the mirror
// covers, with where each goes, and counts those left to a Nexus proxy.
func (r *Reconciler) imagesFor(ctx context.Context, rm *v1alpha1.RegistryMirror) (map[string]target, int, error) {
	selector, err := metav1.LabelSelectorAsSelector(&rm.Spec.ImagesInUse.NamespaceSelector)
	if err != nil {
		return nil, 0, fmt.Errorf("spec.imagesInUse.namespaceSelector: %w", err)
	}
	namespaces := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, namespaces); err != nil {
		return nil, 0, err
	}
	proxies := map[string]bool{}
	if p := rm.Spec.Provision; p != nil && p.Nexus != nil {
		for _, px := range p.Nexus.Proxies {
			proxies[string(px.Upstream)] = true
		}
	}
	mirrorOf := nodeconfig.ProxiedMirrorOf(rm.Spec)
	out := map[string]target{}
	proxied := map[string]bool{}
	for _, ns := range namespaces.Items {
		if !selector.Matches(labels.Set(ns.Labels)) {
			continue
		}
		pods := &corev1.PodList{}
		if err := r.Client.List(ctx, pods, client.InNamespace(ns.Name)); err != nil {
			return nil, 0, err
		}
		for i := range pods.Items {
			for _, image := range Images(&pods.Items[i]) {
				t, ok := targetOf(rm, mirrorOf, image)
				switch {
				case !ok:
				case proxies[t.upstream]:
					proxied[image] = true
				default:
					out[image] = t
				}
			}
		}
	}
	return out, len(proxied), nil
}

// targetOf finds the mirrorOf entry covering an image's registry (docker.io for short
// names; _default for any registry but the mirror's own) and where nodes ask for the image
// at the mirror: the entry's path, else the endpoint's, in place of /v2.
func targetOf(rm *v1alpha1.RegistryMirror, mirrorOf []v1alpha1.UpstreamMirror, image string) (target, bool) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return target{}, false
	}
	registry := ref.Context().RegistryStr()
	var entry *v1alpha1.UpstreamMirror
	for i, m := range mirrorOf {
		host := string(m.Host)
		if pullsecret.SameRegistry(host, registry) {
			entry = &mirrorOf[i]
			break
		}
		if m.Host == v1alpha1.DefaultHost && registry != string(rm.Spec.Host) && entry == nil {
			entry = &mirrorOf[i]
		}
	}
	if entry == nil {
		return target{}, false
	}
	// Where the nodes ask: the mirrorOf path, else the endpoint's, in place of /v2.
	ep, err := imagecopy.MirrorTarget(rm, ref.Context().RepositoryStr(), entry.Path)
	if err != nil {
		return target{}, false
	}
	if rest, ok := strings.CutPrefix(ep.PathPrefix, "/v2/"); ok && strings.Trim(rest, "/") != "" {
		// /v2/my-docker/<repo>/... is repository my-docker/<repo> at the registry's own /v2
		// (Nexus path-based routing): the same requests, and the API check at /v2/ answers.
		host, repo, _ := strings.Cut(ep.Repository, "/")
		ep.Repository, ep.PathPrefix = host+"/"+strings.Trim(rest, "/")+"/"+repo, ""
	}
	return target{upstream: string(entry.Host), ref: ref, endpoint: ep}, true
}

// copy copies one image in use to the mirror.
func (r *Reconciler) copy(ctx context.Context, rm *v1alpha1.RegistryMirror, image string, t target) error {
	dst := t.endpoint
	var err error
	if dst.CA, dst.Auth, err = credentials.MirrorPush(ctx, r.APIReader, credentials.NewScope(r.Namespace, r.SecretNamespaces...), r.Namespace, rm); err != nil {
		return err
	}
	eng, err := imagecopy.New(imagecopy.Endpoint{Repository: t.ref.Context().Name()}, dst,
		imagecopy.Options{Bounds: r.Bounds, Cache: r.copies.cache, Jobs: 2, Tenant: "images-in-use/" + rm.Name})
	if err != nil {
		return err
	}
	res := eng.CopyTag(ctx, t.ref.Identifier())
	if res.Err == nil && !res.UpToDate {
		r.Recorder.Eventf(rm, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonImageInUseMirrored), "CopyImageInUse", "%s copied to the mirror (%d bytes)", image, res.Bytes)
	}
	return res.Err
}

// finished records a copy's outcome.
func (r *Reconciler) finished(rm *v1alpha1.RegistryMirror, image string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.images[rm.Name][image]
	if s == nil {
		return // the mirror or the image went meanwhile
	}
	s.running = false
	now := r.Clock.Now()
	if err == nil {
		*s = imageState{ok: true, checked: now}
		return
	}
	msg := conditions.Cut(err.Error(), maxMessage)
	if msg != s.message {
		r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonImageInUseNotMirrored), "CopyImageInUse", "%s: %s", image, msg)
	}
	s.ok, s.message = false, msg
	s.next = now.Add(min(retryBase<<min(s.failures, 6), retryMax))
	s.failures++
}

// copier runs the copies of images in use under the manager (on the leader only), at
// most cap(slots) at once, and announces each finished one.
type copier struct {
	slots chan struct{}
	done  chan event.GenericEvent
	cache *imagecopy.Cache

	mu  sync.Mutex
	ctx context.Context
	wg  sync.WaitGroup
}

// NeedLeaderElection: copies run on the leader.
func (c *copier) NeedLeaderElection() bool { return true }

// Start runs copies under ctx until it ends, then waits for them.
func (c *copier) Start(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	<-ctx.Done()
	c.wg.Wait()
	return nil
}

func (c *copier) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctx != nil && c.ctx.Err() == nil
}

// start copies one image on a goroutine of its own once a slot is free.
func (c *copier) start(rm *v1alpha1.RegistryMirror, image string, run func(context.Context) error,
	finished func(*v1alpha1.RegistryMirror, string, error)) {
	c.mu.Lock()
	ctx := c.ctx
	c.wg.Add(1)
	c.mu.Unlock()
	rm = rm.DeepCopy()
	go func() {
		defer c.wg.Done()
		var err error
		select {
		case c.slots <- struct{}{}:
			err = run(ctx)
			<-c.slots
		case <-ctx.Done():
			err = ctx.Err()
		}
		finished(rm, image, err)
		select {
		case c.done <- event.GenericEvent{Object: &v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: rm.Name}}}:
		case <-ctx.Done():
		}
	}()
}
