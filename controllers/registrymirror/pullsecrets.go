package registrymirror

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/controllers/internal/credentials"
	"github.com/regwire/regwire/internal/pullsecret"
)

// Pull secrets regwire manages carry the mirror's UID in a label (names can exceed a label
// value's 63 characters; UIDs never do) and record which ServiceAccounts regwire added them
// to, so that shrinking spec.pullSecrets.serviceAccounts takes the references back out.
const (
	PullSecretMirrorLabel      = "regwire.dev/registry-mirror-uid"
	pullSecretMirrorAnnotation = "regwire.dev/registry-mirror"
	pullSecretSAsAnnotation    = "regwire.dev/service-accounts"
)

// reconcilePullSecrets keeps a dockerconfigjson Secret with the mirror's credentials in
// every selected namespace and referenced from the listed ServiceAccounts, and removes them
// where they are no longer wanted.
func (r *Reconciler) reconcilePullSecrets(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	conds, gen := &rm.Status.Conditions, rm.Generation
	spec := rm.Spec.PullSecrets
	if spec == nil {
		if err := r.releasePullSecrets(ctx, rm, nil); err != nil {
			return ctrl.Result{}, err
		}
		rm.Status.PullSecrets = nil
		conditions.Set(conds, gen, v1alpha1.ConditionPullSecretsReady, metav1.ConditionTrue, v1alpha1.ReasonNotRequested, "spec.pullSecrets is not set")
		return ctrl.Result{}, nil
	}

	// A credentials problem leaves the existing pull secrets with the last good credentials.
	data, err := r.pullSecretData(ctx, rm)
	if err != nil {
		return ctrl.Result{}, err
	}
	sel, err := metav1.LabelSelectorAsSelector(spec.NamespaceSelector)
	if err != nil {
		return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonInvalidSpec, "spec.pullSecrets.namespaceSelector: %v", err)
	}
	namespaces := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, namespaces, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing namespaces: %w", err)
	}
	managed, err := r.managedPullSecrets(ctx, rm)
	if err != nil {
		return ctrl.Result{}, err
	}

	st := &v1alpha1.PullSecretsStatus{}
	want := map[string]bool{}
	for _, ns := range namespaces.Items {
		if ns.Status.Phase == corev1.NamespaceTerminating {
			continue
		}
		want[ns.Name] = true
		if err := r.ensurePullSecret(ctx, rm, ns.Name, data, managed[ns.Name]); err != nil {
			st.Failed++
			st.Failing = append(st.Failing, v1alpha1.NamespaceFailure{Namespace: ns.Name, Message: err.Error()})
			continue
		}
		st.Namespaces++
	}
	if err := r.releasePullSecrets(ctx, rm, want); err != nil {
		return ctrl.Result{}, err
	}
	// The first by name, whatever order the cache lists namespaces in: the same list while
	// the same namespaces fail, so the status is not written again.
	slices.SortFunc(st.Failing, func(a, b v1alpha1.NamespaceFailure) int { return cmp.Compare(a.Namespace, b.Namespace) })
	st.Failing = st.Failing[:min(len(st.Failing), maxFailing)]
	rm.Status.PullSecrets = st
	pullSecretsGauge.WithLabelValues(rm.Name).Set(float64(st.Namespaces))
	if len(st.Failing) > 0 {
		conditions.Set(conds, gen, v1alpha1.ConditionPullSecretsReady, metav1.ConditionFalse, v1alpha1.ReasonPullSecretsFailing,
			fmt.Sprintf("%d namespace(s) failed, e.g. %s: %s", st.Failed, st.Failing[0].Namespace, st.Failing[0].Message))
		return ctrl.Result{}, nil
	}
	conditions.Set(conds, gen, v1alpha1.ConditionPullSecretsReady, metav1.ConditionTrue, v1alpha1.ReasonPullSecretsReady,
		fmt.Sprintf("Secret %s is current in %d namespace(s)", spec.SecretName, st.Namespaces))
	return ctrl.Result{}, nil
}

// pullSecretData builds the .dockerconfigjson from the credentials Secret, or from the
// Nexus pull user's when regwire manages the users. Problems the user must fix are
// *conditions.Error.
func (r *Reconciler) pullSecretData(ctx context.Context, rm *v1alpha1.RegistryMirror) ([]byte, error) {
	if rm.Spec.ManagesNexusUsers() {
		name := credentials.NexusUserSecretName(rm.Name, v1alpha1.NexusPullUser)
		field := fmt.Sprintf("the Nexus pull user's Secret %s/%s (made by provisioning)", r.Namespace, name)
		if !apimeta.IsStatusConditionTrue(rm.Status.Conditions, v1alpha1.ConditionProvisioned) {
			return nil, conditions.Errorf(v1alpha1.ReasonCredentialsNotFound, "waiting for provisioning to make the Nexus pull user (see Provisioned)")
		}
		src, err := credentials.Secret(ctx, r.reader(), r.Namespace, name, field)
		if err != nil {
			return nil, err
		}
		return r.buildPullSecret(rm, src, field)
	}
	ref := rm.Spec.CredentialsSecretRef
	const field = "spec.credentialsSecretRef"
	if ref == nil { // CEL requires it with pullSecrets; kept for objects from before that rule
		return nil, conditions.Errorf(v1alpha1.ReasonCredentialsNotFound, "%s is not set; pull secrets are built from it", field)
	}
	if err := r.secretScope().Check(field, ref.Namespace); err != nil {
		return nil, err
	}
	src, err := credentials.Secret(ctx, r.reader(), ref.Namespace, ref.Name, field)
	if err != nil {
		return nil, err
	}
	return r.buildPullSecret(rm, src, field)
}

func (r *Reconciler) buildPullSecret(rm *v1alpha1.RegistryMirror, src *corev1.Secret, field string) ([]byte, error) {
	data, err := pullsecret.Build(string(rm.Spec.Host), src, field)
	if err != nil {
		return nil, conditions.Stalledf(v1alpha1.ReasonCredentialsInvalid, "%s", err.Error())
	}
	return data, nil
}

// managedPullSecrets lists the pull secrets regwire made for rm, by namespace: one call.
func (r *Reconciler) managedPullSecrets(ctx context.Context, rm *v1alpha1.RegistryMirror) (map[string]*corev1.Secret, error) {
	list := &corev1.SecretList{}
	if err := r.Secrets.List(ctx, list, client.MatchingLabels{PullSecretMirrorLabel: string(rm.UID)}); err != nil {
		return nil, fmt.Errorf("listing pull secrets: %w", err)
	}
	out := make(map[string]*corev1.Secret, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Namespace] = &list.Items[i]
	}
	return out, nil
}

// ensurePullSecret makes the Secret current in namespace ns and references it from the
// wanted ServiceAccounts there. existing is regwire's Secret in ns, if any.
func (r *Reconciler) ensurePullSecret(ctx context.Context, rm *v1alpha1.RegistryMirror, ns string, data []byte, existing *corev1.Secret) error {
	spec := rm.Spec.PullSecrets
	patched, err := r.syncServiceAccounts(ctx, rm, ns, existing)
	if err != nil {
		return err
	}
	desired := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: spec.SecretName,
			Labels:      map[string]string{PullSecretMirrorLabel: string(rm.UID), "app.kubernetes.io/managed-by": "regwire"},
			Annotations: map[string]string{pullSecretMirrorAnnotation: rm.Name, pullSecretSAsAnnotation: strings.Join(patched, ",")},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
	if err := controllerutil.SetOwnerReference(rm, desired, r.Client.Scheme()); err != nil {
		return err
	}
	if existing != nil && existing.Name != spec.SecretName {
		// spec.pullSecrets.secretName changed: replace the old Secret.
		if err := r.deletePullSecret(ctx, existing, nil); err != nil {
			return err
		}
		existing = nil
	}
	if existing == nil {
		err := r.Client.Create(ctx, desired)
		if apierrors.IsAlreadyExists(err) {
			// Made by this mirror a moment ago (the cache has not seen it yet), or not ours.
			existing = &corev1.Secret{}
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(desired), existing); err != nil {
				return fmt.Errorf("reading Secret %s: %w", spec.SecretName, err)
			}
			if existing.Labels[PullSecretMirrorLabel] != string(rm.UID) {
				return fmt.Errorf("a Secret named %s exists and is not managed by regwire; rename spec.pullSecrets.secretName or remove that Secret", spec.SecretName)
			}
			return r.updatePullSecret(ctx, existing, desired, data)
		}
		if err != nil {
			return fmt.Errorf("creating Secret %s: %w", spec.SecretName, err)
		}
		return nil
	}
	return r.updatePullSecret(ctx, existing, desired, data)
}

// updatePullSecret brings regwire's existing pull secret to desired, writing only when it
// differs.
func (r *Reconciler) updatePullSecret(ctx context.Context, existing, desired *corev1.Secret, data []byte) error {
	if existing.Type == desired.Type && bytes.Equal(existing.Data[corev1.DockerConfigJsonKey], data) &&
		existing.Annotations[pullSecretSAsAnnotation] == desired.Annotations[pullSecretSAsAnnotation] &&
		existing.Annotations[pullSecretMirrorAnnotation] == desired.Annotations[pullSecretMirrorAnnotation] {
		return nil
	}
	updated := existing.DeepCopy()
	updated.Labels, updated.Annotations = desired.Labels, desired.Annotations
	updated.Data, updated.OwnerReferences = desired.Data, desired.OwnerReferences
	if err := r.Client.Update(ctx, updated); err != nil {
		return fmt.Errorf("updating Secret %s: %w", desired.Name, err)
	}
	return nil
}

// syncServiceAccounts adds the pull secret to the wanted ServiceAccounts in ns and takes it
// out of those regwire added it to before that are no longer wanted. It returns the
// ServiceAccounts that now reference it because of regwire, sorted.
func (r *Reconciler) syncServiceAccounts(ctx context.Context, rm *v1alpha1.RegistryMirror, ns string, existing *corev1.Secret) ([]string, error) {
	spec := rm.Spec.PullSecrets
	var before []string
	if existing != nil && existing.Annotations[pullSecretSAsAnnotation] != "" {
		before = strings.Split(existing.Annotations[pullSecretSAsAnnotation], ",")
	}
	sas := &corev1.ServiceAccountList{}
	if len(spec.ServiceAccounts) > 0 || len(before) > 0 {
		if err := r.Client.List(ctx, sas, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing ServiceAccounts: %w", err)
		}
	}
	var patched []string
	for i := range sas.Items {
		name := sas.Items[i].Name
		var edit func(*corev1.ServiceAccount) bool
		switch {
		case pullsecret.Wants(spec.ServiceAccounts, name):
			edit = func(sa *corev1.ServiceAccount) bool { return pullsecret.AddTo(sa, spec.SecretName) }
			patched = append(patched, name)
		case slices.Contains(before, name):
			edit = func(sa *corev1.ServiceAccount) bool { return pullsecret.RemoveFrom(sa, spec.SecretName) }
		default:
			continue
		}
		if err := r.patchServiceAccount(ctx, &sas.Items[i], edit); err != nil {
			return nil, fmt.Errorf("updating ServiceAccount %s: %w", name, err)
		}
	}
	slices.Sort(patched)
	return patched, nil
}

// releasePullSecrets deletes regwire's pull secrets for rm outside keep (all when keep is
// nil), taking them out of the ServiceAccounts regwire added them to.
func (r *Reconciler) releasePullSecrets(ctx context.Context, rm *v1alpha1.RegistryMirror, keep map[string]bool) error {
	managed, err := r.managedPullSecrets(ctx, rm)
	if err != nil {
		return err
	}
	var errs []error
	for ns, s := range managed {
		if keep[ns] {
			continue
		}
		var sas []string
		if v := s.Annotations[pullSecretSAsAnnotation]; v != "" {
			sas = strings.Split(v, ",")
		}
		errs = append(errs, r.deletePullSecret(ctx, s, sas))
	}
	return errors.Join(errs...)
}

// deletePullSecret removes s and its references from the named ServiceAccounts.
func (r *Reconciler) deletePullSecret(ctx context.Context, s *corev1.Secret, sas []string) error {
	for _, name := range sas {
		sa := &corev1.ServiceAccount{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: name}, sa); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		err := r.patchServiceAccount(ctx, sa, func(sa *corev1.ServiceAccount) bool { return pullsecret.RemoveFrom(sa, s.Name) })
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("updating ServiceAccount %s/%s: %w", s.Namespace, name, err)
		}
	}
	if err := r.Client.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// patchServiceAccount applies edit to the ServiceAccount read as base and patches the
// difference, on condition that nobody changed it since (a merge patch of
// imagePullSecrets replaces the whole list: from a stale read it would drop another
// writer's entry). When somebody did, it reads the ServiceAccount again from the API
// server and edits that.
func (r *Reconciler) patchServiceAccount(ctx context.Context, base *corev1.ServiceAccount, edit func(*corev1.ServiceAccount) bool) error {
	key := client.ObjectKeyFromObject(base)
	fresh := false
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if fresh {
			base = &corev1.ServiceAccount{}
			if err := r.APIReader.Get(ctx, key, base); err != nil {
				return err
			}
		}
		fresh = true
		sa := base.DeepCopy()
		if !edit(sa) {
			return nil
		}
		return r.Client.Patch(ctx, sa, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	})
}
