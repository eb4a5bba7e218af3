// Package credentials reads the credentials and trust a regwire spec references in other
// objects — a RegistryMirror's CA bundle, credentials Secrets — straight from the API
// server (the manager caches no Secret data). A reference to something missing or
// unusable is a *conditions.Error naming the field and the fix.
package credentials

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/internal/pullsecret"
)

// Scope is where the Secrets a RegistryMirror names may be read from: the operator's
// namespace first, then those the manager's --secret-namespaces adds. A RegistryMirror is
// cluster-scoped; naming a Secret anywhere would let whoever may create one have any Secret
// of the cluster sent to a registry they choose, or written to every node.
type Scope []string

// NewScope is the operator's namespace first, then the others.
func NewScope(operator string, others ...string) Scope {
	return append(Scope{operator}, others...)
}

// Check says whether a RegistryMirror's field may name a Secret in namespace ns; it is a
// *conditions.Error naming the field and the fix when not (an empty Scope allows nothing).
func (s Scope) Check(field, ns string) error {
	if slices.Contains(s, ns) {
		return nil
	}
	home := "the operator's namespace"
	if len(s) > 0 {
		home = s[0]
	}
	return conditions.Stalledf(v1alpha1.ReasonSecretNamespaceNotAllowed,
		"%s: regwire reads a RegistryMirror's Secrets only from %s; move the Secret there, or start the manager with --secret-namespaces=%s",
		field, strings.Join(append([]string{home}, s[min(1, len(s)):]...), ", "), ns)
}

// MirrorCA returns a RegistryMirror's CA bundle, from caBundle or the caFrom key, and the
// field it came from; nil data when none is set (system roots). A missing object or key is
// a *conditions.Error with reason CASourceNotFound.
func MirrorCA(ctx context.Context, reader client.Reader, scope Scope, rm *v1alpha1.RegistryMirror) ([]byte, string, error) {
	switch src := rm.Spec.CAFrom; {
	case rm.Spec.CABundle != "":
		return []byte(rm.Spec.CABundle), "spec.caBundle", nil
	case src == nil:
		return nil, "", nil
	case src.SecretKeyRef != nil:
		ref, field := src.SecretKeyRef, "spec.caFrom.secretKeyRef"
		if err := scope.Check(field, ref.Namespace); err != nil {
			return nil, field, err
		}
		data, err := KeyData(ctx, reader, true, ref.Namespace, ref.Name, ref.Key, field, v1alpha1.ReasonCASourceNotFound)
		return data, field, err
	default:
		ref, field := src.ConfigMapKeyRef, "spec.caFrom.configMapKeyRef"
		data, err := KeyData(ctx, reader, false, ref.Namespace, ref.Name, ref.Key, field, v1alpha1.ReasonCASourceNotFound)
		return data, field, err
	}
}

// KeyData reads a key of a Secret (secret) or ConfigMap (data or binaryData) that field
// names; a missing object or key is a *conditions.Error with reason missing.
func KeyData(ctx context.Context, reader client.Reader, secret bool, ns, name, key, field string, missing v1alpha1.ConditionReason) ([]byte, error) {
	var obj client.Object = &corev1.ConfigMap{}
	kind := "ConfigMap"
	if secret {
		obj, kind = &corev1.Secret{}, "Secret"
	}
	err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil, conditions.Errorf(missing, "%s: %s %s/%s not found", field, kind, ns, name)
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", field, err)
	}
	switch o := obj.(type) {
	case *corev1.Secret:
		if data, ok := o.Data[key]; ok {
			return data, nil
		}
	case *corev1.ConfigMap:
		if data, ok := o.Data[key]; ok {
			return []byte(data), nil
		}
		if data, ok := o.BinaryData[key]; ok {
			return data, nil
		}
	}
	return nil, conditions.Errorf(missing, "%s: %s %s/%s has no key %q", field, kind, ns, name, key)
}

// Secret reads the Secret ns/name that field names; a missing one is a *conditions.Error
// with reason CredentialsNotFound.
func Secret(ctx context.Context, reader client.Reader, ns, name, field string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, conditions.Errorf(v1alpha1.ReasonCredentialsNotFound, "%s: Secret %s/%s not found", field, ns, name)
		}
		return nil, fmt.Errorf("reading %s: %w", field, err)
	}
	return s, nil
}

// Credentials reads a basic-auth or dockerconfigjson Secret into the user name and password
// for host. A Secret that is missing or holds nothing usable for host is a
// *conditions.Error (CredentialsNotFound, CredentialsInvalid).
func Credentials(ctx context.Context, reader client.Reader, ns, name, host, field string) (user, pass string, err error) {
	s, err := Secret(ctx, reader, ns, name, field)
	if err != nil {
		return "", "", err
	}
	user, pass, err = pullsecret.Credentials(host, s, field)
	if err != nil {
		return "", "", conditions.Stalledf(v1alpha1.ReasonCredentialsInvalid, "%s", err.Error())
	}
	return user, pass, nil
}

// BoundAuthenticator is Authenticator for a Secret a namespace user names: its credentials
// go only to the host they are for (a dockerconfigjson entry's host, or the hosts a
// basic-auth Secret's v1alpha1.RegistryHostAnnotation names). Any other is refused,
// CredentialsInvalid, before a request is sent.
func BoundAuthenticator(ctx context.Context, reader client.Reader, ns, name, host, field string) (authn.Authenticator, error) {
	s, err := Secret(ctx, reader, ns, name, field)
	if err != nil {
		return nil, err
	}
	if err := pullsecret.BoundTo(host, s, field, v1alpha1.RegistryHostAnnotation); err != nil {
		return nil, conditions.Stalledf(v1alpha1.ReasonCredentialsInvalid, "%s", err.Error())
	}
	user, pass, err := pullsecret.Credentials(host, s, field)
	if err != nil {
		return nil, conditions.Stalledf(v1alpha1.ReasonCredentialsInvalid, "%s", err.Error())
	}
	return &authn.Basic{Username: user, Password: pass}, nil
}

// Authenticator is Credentials as go-containerregistry's basic authenticator.
func Authenticator(ctx context.Context, reader client.Reader, ns, name, host, field string) (authn.Authenticator, error) {
	user, pass, err := Credentials(ctx, reader, ns, name, host, field)
	if err != nil {
		return nil, err
	}
	return &authn.Basic{Username: user, Password: pass}, nil
}

// MirrorPush reads what a copy into a RegistryMirror needs: its CA and the credentials to
// push with — the Nexus push user provisioning made when regwire manages the users (its
// Secret is the operator's, read by no tenant), else spec.credentialsSecretRef (within
// scope), else none. Problems the user must fix are *conditions.Error naming the field.
func MirrorPush(ctx context.Context, reader client.Reader, scope Scope, operatorNamespace string, rm *v1alpha1.RegistryMirror) ([]byte, authn.Authenticator, error) {
	ca, field, err := MirrorCA(ctx, reader, scope, rm)
	if e, ok := conditions.Reported(err); ok {
		return nil, nil, conditions.Errorf(v1alpha1.ReasonTargetUnreachable, "RegistryMirror %s: %s", rm.Name, e.Message)
	} else if err != nil {
		return nil, nil, fmt.Errorf("RegistryMirror %s: %s: %w", rm.Name, field, err)
	}
	var auth authn.Authenticator
	switch ref := rm.Spec.CredentialsSecretRef; {
	case rm.Spec.ManagesNexusUsers():
		name := NexusUserSecretName(rm.Name, v1alpha1.NexusPushUser)
		field := fmt.Sprintf("RegistryMirror %s's Nexus push user (Secret %s/%s, made when the mirror is Provisioned)", rm.Name, operatorNamespace, name)
		auth, err = Authenticator(ctx, reader, operatorNamespace, name, string(rm.Spec.Host), field)
	case ref != nil:
		if err := scope.Check(fmt.Sprintf("RegistryMirror %s spec.credentialsSecretRef", rm.Name), ref.Namespace); err != nil {
			return nil, nil, err
		}
		auth, err = Authenticator(ctx, reader, ref.Namespace, ref.Name, string(rm.Spec.Host), fmt.Sprintf("RegistryMirror %s spec.credentialsSecretRef", rm.Name))
	}
	return ca, auth, err
}
