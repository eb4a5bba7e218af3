// Package controllers holds regwire's reconcilers: Kubernetes I/O only, with decisions
// delegated to the engines under internal/.
package controllers

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options configure the regwire controllers.
type Options struct {
	// Namespace is the operator's namespace, which holds the published mirrors and the
	// agent DaemonSet.
	Namespace string
	// Agent configures the node agent DaemonSet.
	Agent AgentOptions
	// SyncProgressInterval is how often an ImageSync's status shows the progress of a copy
	// under way (default 10s).
	SyncProgressInterval time.Duration
}

// CacheOptions limit what the manager caches to what the controllers read: ConfigMaps and
// DaemonSets only in the operator namespace, published ConfigMaps only.
func CacheOptions(o Options) cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{o.Namespace: {}},
			Label:      labels.SelectorFromSet(labels.Set{PublishedLabel: "true"}),
		},
		&appsv1.DaemonSet{}: {Namespaces: map[string]cache.Config{o.Namespace: {}}},
	}}
}

// ClientOptions make the manager's client read Secrets straight from the API server: the
// controllers read few of them, and caching them would keep every Secret of the cluster in
// memory.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// Setup registers every regwire controller with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := (&RegistryMirrorReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("regwire-registrymirror"),
		Namespace: o.Namespace,
		Agent:     o.Agent,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&ImageSyncReconciler{
		Client:           mgr.GetClient(),
		APIReader:        mgr.GetAPIReader(),
		Recorder:         mgr.GetEventRecorder("regwire-imagesync"),
		Jobs:             4,
		ProgressInterval: o.SyncProgressInterval,
	}).SetupWithManager(ctx, mgr)
}
