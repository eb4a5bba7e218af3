// Package controllers assembles regwire's operator: one manager running the RegistryMirror,
// ImageSync and agent DaemonSet controllers (packages registrymirror, imagesync and
// agentdaemonset), with a cache limited to what they read. `regwire manager`, the embedded
// demo and the tests all run it through NewManager. The node agent is assembled by package
// nodeagent.
package controllers

import (
	"cmp"
	"errors"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/controllers/imagesync"
	"github.com/regwire/regwire/controllers/internal/shards"
	"github.com/regwire/regwire/controllers/inuse"
	"github.com/regwire/regwire/controllers/registrymirror"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/scheme"
)

// DefaultAgentReportRate is the agents' reports a second after a mirror change, at most:
// a tenth of the writes of the 5,000 kubelets' node leases.
const DefaultAgentReportRate = 100

// Options configure the regwire operator.
type Options struct {
	// Namespace is the operator's namespace, which holds the published mirrors and the
	// agent DaemonSet.
	Namespace string
	// SecretNamespaces are the namespaces besides Namespace whose Secrets RegistryMirrors
	// may name (credentials, CA, client certificates, Nexus admin).
	SecretNamespaces []string
	// Agent configures the node agent DaemonSet.
	Agent agentdaemonset.Options
	// AgentReportRate is how many reports a second the agents of a mirror's nodes may
	// write after a change: past what their own spread holds, the mirror publishes a window
	// to spread them over (nodeconfig.ReportWindow). Zero: DefaultAgentReportRate;
	// negative: no window is published.
	AgentReportRate float64
	// PodName is the manager's own Pod in Namespace, whose Deployment then owns the agent
	// DaemonSet (so that uninstalling removes the agents); "" outside a Pod.
	PodName string
	// SyncProgressInterval is how often an ImageSync's status shows the progress of a copy
	// under way (default 10s).
	SyncProgressInterval time.Duration
	// ConcurrentSyncs bounds the ImageSyncs copying at once, and
	// ConcurrentSyncsPerNamespace those of one namespace (defaults 16 and half of it).
	ConcurrentSyncs, ConcurrentSyncsPerNamespace int
	// CopyShards, when positive, shares the ImageSyncs among every replica of the
	// manager: they are cut into this many shards, each replica holds a fair share through
	// Leases in Namespace and copies only the ImageSyncs of its shards. Zero: the leader
	// copies every ImageSync. The same on every replica.
	CopyShards int
	// Identity names this replica among those sharing copies (its Pod's name).
	Identity string
	// ShardTimings override the shard Leases' timings; zero fields keep the defaults
	// (DefaultLeaseTimings).
	ShardTimings LeaseTimings
	// ShardsKeptOnStop leaves this replica's shard Leases as they are when it stops, as a
	// crashed replica would (the others take its shards once its membership expires);
	// by default a stopping replica releases them at once.
	ShardsKeptOnStop bool
	// CopyBounds are what a registry may make an ImageSync's copy do: stall timeout, blob
	// size cap, minimum transfer rate, private redirects.
	CopyBounds imagecopy.Bounds
	// InUseConcurrency bounds the images in use (RegistryMirror spec.imagesInUse) copied at
	// once (inuse.DefaultConcurrency when not positive).
	InUseConcurrency int
	// Manager holds the process's own settings: metrics and probe addresses, leader
	// election, logger, the cache's sync period. The scheme, what the cache holds of each
	// kind (Cache.ByObject) and the client are the operator's.
	Manager ctrl.Options
}

// NewManager assembles the operator: a manager with both controllers, /healthz and /readyz.
// Run it with Start.
func NewManager(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	mo := o.Manager
	mo.Scheme = scheme.New()
	mo.Cache.ByObject = cacheByObject(o.Namespace)
	mo.Cache.DefaultTransform = cache.TransformStripManagedFields()
	mo.Client = clientOptions()
	mgr, err := ctrl.NewManager(cfg, mo)
	if err != nil {
		return nil, err
	}
	secrets, err := newSecretCache(cfg, mgr, o.Namespace, o.SecretNamespaces)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(secrets); err != nil {
		return nil, err
	}
	if err := (&registrymirror.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Secrets:   secrets,
		Recorder:  mgr.GetEventRecorder("regwire-registrymirror"),
		Namespace: o.Namespace, SecretNamespaces: o.SecretNamespaces,
		AgentReportRate: cmp.Or(o.AgentReportRate, DefaultAgentReportRate),
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&agentdaemonset.Reconciler{
		Client:     mgr.GetClient(),
		APIReader:  mgr.GetAPIReader(),
		Namespace:  o.Namespace,
		Options:    o.Agent,
		ManagerPod: o.PodName,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	var copyShards *shards.Coordinator
	if o.CopyShards > 0 {
		if o.Identity == "" {
			return nil, errors.New("sharing copies among replicas needs this replica's identity (its Pod's name)")
		}
		copyShards = &shards.Coordinator{
			Client: mgr.GetClient(), Reader: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
			Namespace: o.Namespace, Name: CopyShardSet, Identity: o.Identity, Shards: o.CopyShards,
			Timings: o.ShardTimings, ReleaseOnCancel: !o.ShardsKeptOnStop,
		}
	}
	if err := (&imagesync.Reconciler{
		Client:                      mgr.GetClient(),
		APIReader:                   mgr.GetAPIReader(),
		Recorder:                    mgr.GetEventRecorder("regwire-imagesync"),
		ProgressInterval:            o.SyncProgressInterval,
		Namespace:                   o.Namespace,
		SecretNamespaces:            o.SecretNamespaces,
		Bounds:                      o.CopyBounds,
		ConcurrentSyncs:             o.ConcurrentSyncs,
		ConcurrentSyncsPerNamespace: o.ConcurrentSyncsPerNamespace,
		Shards:                      copyShards,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&inuse.Reconciler{
		Client:           mgr.GetClient(),
		APIReader:        mgr.GetAPIReader(),
		Recorder:         mgr.GetEventRecorder("regwire-imagesinuse"),
		Namespace:        o.Namespace,
		SecretNamespaces: o.SecretNamespaces,
		Bounds:           o.CopyBounds,
		Concurrency:      o.InUseConcurrency,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// LeaseTimings are the timings of the Leases through which replicas share copies:
// LeaseDuration, RenewDeadline and the Tick at which a replica settles its share are
// leader election's.
type LeaseTimings = shards.Timings

// DefaultLeaseTimings are controller-runtime's leader election defaults, and a renewal
// every 5 s.
func DefaultLeaseTimings() LeaseTimings {
	return shards.Timings{LeaseDuration: shards.DefaultLeaseDuration, RenewDeadline: shards.DefaultRenewDeadline,
		RenewInterval: shards.DefaultRenewInterval, Tick: shards.DefaultTick}
}

// CopyShardSet names the Leases through which replicas share the ImageSyncs' copies.
const CopyShardSet = "regwire-copies"

// cacheByObject limits what the manager caches to what the controllers read: ConfigMaps and
// DaemonSets only in the operator namespace, published ConfigMaps only, and of each Node
// what node selection reads (nodeForSelection). No cached object keeps its managedFields
// (the default transform).
func cacheByObject(namespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Node{}: {Transform: nodeForSelection},
		// Pods are watched only once a mirror keeps images in use; of each, its images.
		&corev1.Pod{}: {Transform: inuse.PodImagesOnly},
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Label:      nodeconfig.PublishedSelector(),
		},
		&appsv1.DaemonSet{}: {Namespaces: map[string]cache.Config{namespace: {}}},
		&coordinationv1.Lease{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Label:      labels.SelectorFromSet(labels.Set{shards.LabelSet: CopyShardSet}),
		},
	}
}

// newSecretCache caches the Secrets the RegistryMirror controller reads and watches: every
// Secret of the namespaces a mirror may name Secrets in (the operator's and
// --secret-namespaces: credentials, CA, client certificates, Nexus admin and users) and,
// elsewhere, only the pull secrets it made (by their label). Secrets of other namespaces
// — most of a cluster's — are neither read nor held.
func newSecretCache(cfg *rest.Config, mgr ctrl.Manager, namespace string, others []string) (cache.Cache, error) {
	pullSecrets, err := labels.NewRequirement(registrymirror.PullSecretMirrorLabel, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	namespaces := map[string]cache.Config{cache.AllNamespaces: {LabelSelector: labels.NewSelector().Add(*pullSecrets)}}
	for _, ns := range append([]string{namespace}, others...) {
		namespaces[ns] = cache.Config{}
	}
	return cache.New(cfg, cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		DefaultNamespaces: namespaces, DefaultTransform: cache.TransformStripManagedFields(),
	})
}

// clientOptions make the manager's client read Secrets straight from the API server: the
// controllers read few of them, and caching them would keep every Secret of the cluster in
// memory.
func clientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// nodeForSelection keeps of a Node what a RegistryMirror's nodeSelector and tolerations
// select on (its labels and taints) and what identifies it. A real Node is some 15 KB, most
// of it status (images, conditions) that kubelet rewrites with every heartbeat; at 5,000
// nodes the cache holds a few MB instead of ~75.
func nodeForSelection(in any) (any, error) {
	n, ok := in.(*corev1.Node)
	if !ok {
		return in, nil
	}
	return &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Generation: n.Generation,
			CreationTimestamp: n.CreationTimestamp, DeletionTimestamp: n.DeletionTimestamp, Labels: n.Labels,
		},
		Spec: corev1.NodeSpec{Taints: n.Spec.Taints, Unschedulable: n.Spec.Unschedulable},
	}, nil
}
