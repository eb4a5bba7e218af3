// Package controllers holds regwire's reconcilers: Kubernetes I/O only, with decisions
// delegated to the engines under internal/.
package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Setup registers every regwire controller with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager) error {
	if err := (&RegistryMirrorReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("regwire-registrymirror"),
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&ImageSyncReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("regwire-imagesync"),
	}).SetupWithManager(ctx, mgr)
}
