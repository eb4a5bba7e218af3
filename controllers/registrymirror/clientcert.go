package registrymirror

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/controllers/internal/credentials"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// reconcileClientCertificate checks the client certificate spec.clientCertificateSecretRef
// names and delivers it to the node agents in nodeconfig.ClientCertificatesSecretFor(mirror):
// one of the Secrets their Role may read. Neither certificate nor key goes anywhere else: the
// published ConfigMap carries a digest, and messages name the Secret, never its data.
func (r *Reconciler) reconcileClientCertificate(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	conds, gen := &rm.Status.Conditions, rm.Generation
	ref := rm.Spec.ClientCertificateSecretRef
	if ref == nil {
		if err := r.releaseClientCertificate(ctx, rm); err != nil {
			return ctrl.Result{}, err
		}
		sc.clientCertUsable = true
		conditions.Set(conds, gen, v1alpha1.ConditionClientCertificateReady, metav1.ConditionTrue, v1alpha1.ReasonNotRequested,
			"spec.clientCertificateSecretRef is not set")
		return ctrl.Result{}, nil
	}
	// Until it checks out, the mirror is not published: nodes keep the last good files.
	const field = "spec.clientCertificateSecretRef"
	if err := r.secretScope().Check(field, ref.Namespace); err != nil {
		return ctrl.Result{}, err
	}
	s, err := credentials.Secret(ctx, r.reader(), ref.Namespace, ref.Name, field)
	if e, ok := conditions.Reported(err); ok {
		return ctrl.Result{}, conditions.Errorf(v1alpha1.ReasonClientCertificateNotFound, "%s", e.Message).Retry(time.Minute)
	} else if err != nil {
		return ctrl.Result{}, err
	}
	cert, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(cert) == 0 || len(key) == 0 {
		return ctrl.Result{}, conditions.Errorf(v1alpha1.ReasonClientCertificateNotFound,
			"%s: Secret %s/%s needs both %s and %s (a kubernetes.io/tls Secret, as kubectl create secret tls makes)", field, ref.Namespace, ref.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil { // its messages never quote the key
		return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonClientCertificateInvalid, "%s: Secret %s/%s: %v", field, ref.Namespace, ref.Name, err)
	}
	leaf := pair.Leaf
	now := r.Clock.Now()
	if now.After(leaf.NotAfter) {
		return ctrl.Result{}, conditions.Stalledf(v1alpha1.ReasonClientCertificateInvalid, "%s: the certificate %q in Secret %s/%s expired at %s; renew it",
			field, leaf.Subject.String(), ref.Namespace, ref.Name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := r.storeClientCertificate(ctx, rm.Name, cert, key); err != nil {
		return ctrl.Result{}, err
	}
	sc.clientCertUsable = true
	sc.clientCert = nodeconfig.ClientCertificateDigest(cert, key)
	conditions.Set(conds, gen, v1alpha1.ConditionClientCertificateReady, metav1.ConditionTrue, v1alpha1.ReasonClientCertificateReady,
		fmt.Sprintf("certificate %q, valid until %s, delivered to the node agents", leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339)))
	return ctrl.Result{RequeueAfter: leaf.NotAfter.Sub(now) + time.Second}, nil
}

// releaseClientCertificate takes the mirror's pair out of the agents' Secret, if it
// ever asked for one: the condition says so, which spares every other mirror a read of the
// Secret on each reconcile.
func (r *Reconciler) releaseClientCertificate(ctx context.Context, rm *v1alpha1.RegistryMirror) error {
	c := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionClientCertificateReady)
	if rm.Spec.ClientCertificateSecretRef == nil && (c == nil || c.Reason == string(v1alpha1.ReasonNotRequested)) {
		return nil
	}
	return r.storeClientCertificate(ctx, rm.Name, nil, nil)
}

// storeClientCertificate puts mirror's certificate and key into the agents' Secret for it,
// or takes them out when cert is nil. Merge patches touch only the mirror's own keys, so
// mirrors reconciled at once do not overwrite each other. A pair left in the one Secret
// of earlier versions is taken out.
func (r *Reconciler) storeClientCertificate(ctx context.Context, mirror string, cert, key []byte) error {
	if err := r.storeClientCertificateIn(ctx, nodeconfig.ClientCertificatesSecretFor(mirror), mirror, cert, key); err != nil {
		return err
	}
	return r.storeClientCertificateIn(ctx, nodeconfig.ClientCertificatesSecret, mirror, nil, nil)
}

func (r *Reconciler) storeClientCertificateIn(ctx context.Context, secret, mirror string, cert, key []byte) error {
	certKey, keyKey := nodeconfig.ClientCertificateKeys(mirror)
	current := &corev1.Secret{}
	// The Secret cache holds the operator namespace's Secrets; the API server is asked
	// when it has none yet.
	err := r.reader().Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: secret}, current)
	switch {
	case apierrors.IsNotFound(err) && cert == nil:
		return nil
	case apierrors.IsNotFound(err):
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: secret,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "regwire", "app.kubernetes.io/component": "agent"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{certKey: cert, keyKey: key},
		}
		if err := r.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("storing the client certificate for the node agents: %w", err)
		} else if err == nil {
			return nil
		}
		// Created meanwhile by another mirror's reconcile: patch it below.
	case err != nil:
		return fmt.Errorf("reading the node agents' client certificates (Secret %s): %w", secret, err)
	case cert == nil && current.Data[certKey] == nil && current.Data[keyKey] == nil:
		return nil
	case cert != nil && string(current.Data[certKey]) == string(cert) && string(current.Data[keyKey]) == string(key):
		return nil
	}
	var data map[string]any
	if cert == nil {
		data = map[string]any{certKey: nil, keyKey: nil}
	} else {
		data = map[string]any{certKey: cert, keyKey: key} // []byte marshals as base64
	}
	patch, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: secret}}
	if err := r.Client.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("updating the node agents' client certificates (Secret %s): %w", secret, err)
	}
	return nil
}
