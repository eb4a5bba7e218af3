package controllers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/cabundle"
	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/pullsecret"
)

// provisionRecheck is how often a provisioned repository is checked again (drift: someone
// changed or deleted it in Nexus); provisionRetry is when a failed provisioning is retried.
const (
	provisionRecheck = 30 * time.Minute
	provisionRetry   = time.Minute
	nexusTimeout     = 30 * time.Second
)

type provisionCheck struct {
	generation int64
	at         time.Time
}

// reconcileProvision creates or updates the Nexus docker (hosted) repository of
// spec.provision.nexus, with path-based routing, and activates the Docker Bearer Token
// realm. It talks to Nexus when the generation is new, after a failure, and every
// provisionRecheck; a reconcile in between sends nothing.
func (r *RegistryMirrorReconciler) reconcileProvision(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	if rm.Spec.Provision == nil || rm.Spec.Provision.Nexus == nil {
		r.provisioned.Delete(rm.UID)
		setCondition(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionProvisioned, metav1.ConditionTrue,
			v1alpha1.ReasonNotRequested, "spec.provision is not set")
		return ctrl.Result{}, nil
	}
	now := r.Now()
	if v, ok := r.provisioned.Load(rm.UID); ok {
		c := v.(provisionCheck)
		cond := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionProvisioned)
		if c.generation == rm.Generation && cond != nil && cond.Status == metav1.ConditionTrue && now.Sub(c.at) < provisionRecheck {
			return ctrl.Result{RequeueAfter: provisionRecheck - now.Sub(c.at)}, nil
		}
	}
	p := rm.Spec.Provision.Nexus
	fail := func(reason, msg string) (ctrl.Result, error) {
		r.provisioned.Delete(rm.UID)
		if c := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionProvisioned); c == nil || c.Reason != reason {
			r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, reason, "Provision", "%s", msg)
		}
		setCondition(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionProvisioned, metav1.ConditionFalse, reason, msg)
		return ctrl.Result{RequeueAfter: provisionRetry}, nil
	}

	const field = "spec.provision.nexus.adminCredentialsSecretRef"
	ref := p.AdminCredentialsSecretRef
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return fail(ReasonCredentialsMissing, fmt.Sprintf("%s: Secret %s/%s not found", field, ref.Namespace, ref.Name))
		}
		return ctrl.Result{}, fmt.Errorf("reading %s: %w", field, err)
	}
	user, pass, err := pullsecret.Credentials(hostOfURL(p.URL), secret, field)
	if err != nil {
		return fail(ReasonCredentialsInvalid, err.Error())
	}
	hc := r.NexusHTTP
	if hc == nil {
		if hc, err = nexusHTTPClient(sc); err != nil {
			return fail(v1alpha1.ReasonCAInvalid, err.Error())
		}
	}
	c, err := nexus.New(p.URL, user, pass, hc)
	if err != nil {
		return fail(v1alpha1.ReasonInvalidSpec, "spec.provision.nexus.url: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, nexusTimeout)
	defer cancel()
	_, err = c.EnsureRealm(ctx, nexus.RealmDockerToken)
	var action nexus.Action
	if err == nil {
		action, err = c.EnsureDockerHosted(ctx, &nexus.DockerHostedRepository{
			Name:   p.Repository,
			Online: true,
			Storage: nexus.HostedStorage{
				BlobStoreName: p.BlobStore, StrictContentTypeValidation: true, WritePolicy: nexusWritePolicy(p.WritePolicy),
			},
			// Path-based routing: images are <host>/<repository>/<name>, as in the seed.
			Docker: nexus.Docker{ForceBasicAuth: true, PathEnabled: new(true)},
		})
	}
	if err != nil {
		var ne *nexus.Error
		switch {
		case nexus.IsUnauthorized(err):
			return fail(v1alpha1.ReasonNexusAuthFailed, fmt.Sprintf("%s: %v", field, err))
		case errors.As(err, &ne):
			return fail(v1alpha1.ReasonProvisionFailed, err.Error())
		case ctx.Err() != nil && errors.Is(err, context.Canceled):
			return ctrl.Result{}, err // shutting down
		default:
			return fail(v1alpha1.ReasonNexusUnreachable, err.Error())
		}
	}
	reason := map[nexus.Action]string{
		nexus.Created: v1alpha1.ReasonRepositoryCreated, nexus.Updated: v1alpha1.ReasonRepositoryUpdated, nexus.Unchanged: v1alpha1.ReasonRepositoryUpToDate,
	}[action]
	if action != nexus.Unchanged {
		r.Recorder.Eventf(rm, nil, corev1.EventTypeNormal, reason, "Provision", "docker (hosted) repository %s %s in Nexus at %s", p.Repository, action, p.URL)
		logf.FromContext(ctx).Info("Provisioned Nexus repository", "repository", p.Repository, "action", string(action))
	}
	setCondition(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, reason,
		fmt.Sprintf("docker (hosted) repository %s is as specified in Nexus at %s (path-based routing, Docker Bearer Token realm active)", p.Repository, p.URL))
	r.provisioned.Store(rm.UID, provisionCheck{generation: rm.Generation, at: now})
	return ctrl.Result{RequeueAfter: provisionRecheck}, nil
}

// nexusWritePolicy maps the API's enum onto Nexus's.
func nexusWritePolicy(p v1alpha1.WritePolicy) string {
	switch p {
	case v1alpha1.WritePolicyAllowOnce:
		return nexus.WritePolicyAllowOnce
	case v1alpha1.WritePolicyDeny:
		return nexus.WritePolicyDeny
	default:
		return nexus.WritePolicyAllow
	}
}

// nexusHTTPClient trusts what the mirror's nodes trust: its CA (Nexus usually sits behind
// the same TLS proxy as the registry), or the system roots, or nothing when verification
// is off on purpose.
func nexusHTTPClient(sc *mirrorScope) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: sc.rm.Spec.InsecureSkipVerify} //nolint:gosec // only when the spec asks
	if len(sc.ca) > 0 {
		b, err := cabundle.Parse(sc.ca)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig.RootCAs = b.Pool()
	}
	return &http.Client{Transport: t, Timeout: nexusTimeout}, nil
}

// hostOfURL returns the host of a URL, the key a dockerconfigjson Secret would use.
func hostOfURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Host
	}
	return s
}
