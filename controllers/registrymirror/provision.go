package registrymirror

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/controllers/internal/credentials"
	"github.com/regwire/regwire/internal/cabundle"
	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/registryhttp"
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
	// userSecrets are the resourceVersions of the Nexus users' Secrets, by kind, when
	// Nexus was given their passwords: a Secret deleted or edited since is provisioned again.
	userSecrets map[string]string
	// upstreamSecrets are those of the proxies' upstream credentials, by upstream.
	upstreamSecrets map[string]string
	// reason and message are the Provisioned condition the check set: a reconcile that
	// reads a status older than that check (the cache lags) sets it again.
	reason  v1alpha1.ConditionReason
	message string
}

// reconcileProvision creates or updates the Nexus docker (hosted) repository of
// spec.provision.nexus (with path-based routing when nodes reach it at the root), for
// dockerAuth Token activates the Docker Bearer Token realm, and with users Managed keeps
// the repository's pull and push users. It talks to Nexus when the generation is new,
// after a failure, when a user's Secret changed, and every provisionRecheck; a reconcile
// in between sends nothing.
func (r *Reconciler) reconcileProvision(ctx context.Context, sc *mirrorScope) (ctrl.Result, error) {
	rm := sc.rm
	if rm.Spec.Provision == nil || rm.Spec.Provision.Nexus == nil {
		r.provisioned.Delete(rm.UID)
		conditions.Set(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionProvisioned, metav1.ConditionTrue,
			v1alpha1.ReasonNotRequested, "spec.provision is not set")
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	if c, left, ok := r.provisionCurrent(ctx, rm, now); ok {
		conditions.Set(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, c.reason, c.message)
		return ctrl.Result{RequeueAfter: left}, nil
	}
	var sent map[string]string
	if v, ok := r.provisioned.Load(rm.UID); ok {
		sent = v.(provisionCheck).upstreamSecrets
	}
	out, err := r.provision(ctx, sc, sent)
	if err != nil {
		r.provisioned.Delete(rm.UID)
		e, ok := conditions.Reported(err)
		if !ok {
			return ctrl.Result{}, err
		}
		if !conditions.Has(rm.Status.Conditions, v1alpha1.ConditionProvisioned, e.Reason) {
			r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, string(e.Reason), "Provision", "%s", e.Message)
		}
		return ctrl.Result{}, e.Retry(provisionRetry)
	}
	p := rm.Spec.Provision.Nexus
	action := out.action
	if action == nexus.Unchanged && len(out.proxies.changed) > 0 {
		action = nexus.Updated
	}
	reason := map[nexus.Action]v1alpha1.ConditionReason{
		nexus.Created: v1alpha1.ReasonRepositoryCreated, nexus.Updated: v1alpha1.ReasonRepositoryUpdated, nexus.Unchanged: v1alpha1.ReasonRepositoryUpToDate,
	}[action]
	if action != nexus.Unchanged {
		changes := append([]string{fmt.Sprintf("docker (hosted) %s %s", p.Repository, out.action)}, out.proxies.changed...)
		r.Recorder.Eventf(rm, nil, corev1.EventTypeNormal, string(reason), "Provision", "in Nexus at %s: %s", p.URL, strings.Join(changes, ", "))
		logf.FromContext(ctx).Info("Provisioned Nexus repositories", "repository", p.Repository, "action", string(out.action), "others", out.proxies.changed)
	}
	msg := fmt.Sprintf("docker (hosted) repository %s is as specified in Nexus at %s (%s)", p.Repository, p.URL, provisionSummary(sc.rm))
	if readers := out.proxies.hostedReaders; len(readers) > 0 {
		reason = v1alpha1.ReasonHostedReadableAnonymously
		msg += fmt.Sprintf("; but anonymous users may also read the hosted repository %s through the anonymous user's %s, which regwire did not give: "+
			"take those roles from Nexus's anonymous user if images there are private", p.Repository, strings.Join(readers, ", "))
		if !conditions.Has(rm.Status.Conditions, v1alpha1.ConditionProvisioned, reason) {
			r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, string(reason), "Provision", "%s", msg)
		}
	}
	conditions.Set(&rm.Status.Conditions, rm.Generation, v1alpha1.ConditionProvisioned, metav1.ConditionTrue, reason, msg)
	r.provisioned.Store(rm.UID, provisionCheck{generation: rm.Generation, at: now, userSecrets: out.userSecrets, upstreamSecrets: out.proxies.upstreamSecrets, reason: reason, message: msg})
	return ctrl.Result{RequeueAfter: provisionRecheck}, nil
}

// provisionCurrent says whether this generation was found as specified in Nexus less than
// provisionRecheck ago, with its users' Secrets unchanged since; it returns that check and
// how long until the next one.
func (r *Reconciler) provisionCurrent(ctx context.Context, rm *v1alpha1.RegistryMirror, now time.Time) (provisionCheck, time.Duration, bool) {
	v, ok := r.provisioned.Load(rm.UID)
	if !ok {
		return provisionCheck{}, 0, false
	}
	c := v.(provisionCheck)
	if c.generation != rm.Generation || now.Sub(c.at) >= provisionRecheck || !r.nexusUserSecretsUnchanged(ctx, rm, c.userSecrets) ||
		!r.upstreamSecretsUnchanged(ctx, rm, c.upstreamSecrets) {
		return provisionCheck{}, 0, false
	}
	return c, provisionRecheck - now.Sub(c.at), true
}

// provisionOutcome is what provision did: to the hosted repository, the users' Secrets'
// resourceVersions, and the proxies.
type provisionOutcome struct {
	action      nexus.Action
	userSecrets map[string]string
	proxies     proxiesResult
}

// provision reads the admin credentials and makes Nexus hold the repository, the users
// when regwire manages them, and the proxies, group and anonymous read, as specified.
// sent are the upstream Secrets' versions whose passwords Nexus holds. Problems the user
// must fix are *conditions.Error.
func (r *Reconciler) provision(ctx context.Context, sc *mirrorScope, sent map[string]string) (provisionOutcome, error) {
	p := sc.rm.Spec.Provision.Nexus
	var out provisionOutcome
	c, err := r.nexusAdmin(ctx, sc)
	if err != nil {
		return out, err
	}
	ctx, cancel := context.WithTimeout(ctx, nexusTimeout)
	defer cancel()
	token := p.DockerAuth == v1alpha1.NexusDockerAuthToken
	if token {
		// Bearer tokens come from the DockerToken realm; Basic needs no realm.
		_, err = c.EnsureRealm(ctx, nexus.RealmDockerToken)
	}
	if err == nil {
		docker := nexus.Docker{ForceBasicAuth: !token}
		if pathRouted(sc.rm.Spec.Endpoint) {
			// Path-based routing: images are <host>/<repository>/<name>, e.g.
			// nexus.local/my-docker/busybox. An endpoint at the repository's base path
			// (/repository/my-docker/v2) needs none, and works on every Nexus version.
			docker.PathEnabled = new(true)
		}
		out.action, err = c.EnsureDockerHosted(ctx, &nexus.DockerHostedRepository{
			Name:   p.Repository,
			Online: true,
			Storage: nexus.HostedStorage{
				BlobStoreName: p.BlobStore, StrictContentTypeValidation: true, WritePolicy: nexusWritePolicy(p.WritePolicy),
			},
			Docker: docker,
		})
	}
	if err == nil && sc.rm.Spec.ManagesNexusUsers() {
		out.userSecrets, err = r.provisionUsers(ctx, c, sc.rm)
	} else if err == nil {
		err = r.releaseNexusUsers(ctx, sc.rm, func() (*nexus.Client, error) { return c, nil }) // users: None since they were made
	}
	if err == nil {
		out.proxies, err = r.provisionProxies(ctx, c, sc.rm, sent)
	}
	if _, reported := conditions.Reported(err); reported {
		return provisionOutcome{}, err
	}
	if err != nil {
		return provisionOutcome{}, nexusError(ctx, adminField, err)
	}
	return out, nil
}

// upstreamSecretsUnchanged says whether the proxies' upstream credentials Secrets are the
// versions whose passwords Nexus was given.
func (r *Reconciler) upstreamSecretsUnchanged(ctx context.Context, rm *v1alpha1.RegistryMirror, versions map[string]string) bool {
	for _, px := range rm.Spec.Provision.Nexus.Proxies {
		ref := px.CredentialsSecretRef
		if ref == nil {
			continue
		}
		s := &corev1.Secret{}
		if err := r.Secrets.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil || s.ResourceVersion != versions[string(px.Upstream)] {
			return false
		}
	}
	return true
}

const adminField = "spec.provision.nexus.adminCredentialsSecretRef"

// nexusAdmin is a client of spec.provision.nexus's Nexus as its admin, trusting what the
// mirror's nodes trust. Problems the user must fix are *conditions.Error.
func (r *Reconciler) nexusAdmin(ctx context.Context, sc *mirrorScope) (*nexus.Client, error) {
	p := sc.rm.Spec.Provision.Nexus
	ref := p.AdminCredentialsSecretRef
	if err := r.secretScope().Check(adminField, ref.Namespace); err != nil {
		return nil, err
	}
	user, pass, err := credentials.Credentials(ctx, r.reader(), ref.Namespace, ref.Name, hostOfURL(p.URL), adminField)
	if err != nil {
		return nil, err
	}
	hc, err := nexusHTTPClient(sc)
	if err != nil {
		return nil, conditions.Stalledf(v1alpha1.ReasonCAInvalid, "%v", err)
	}
	c, err := nexus.New(p.URL, user, pass, hc)
	if err != nil {
		return nil, conditions.Stalledf(v1alpha1.ReasonInvalidSpec, "spec.provision.nexus.url: %v", err)
	}
	return c, nil
}

// nexusError says what a failed call to Nexus means for the user: wrong admin credentials,
// an error of Nexus's own (its text), or no answer. Shutting down is not the user's problem.
func nexusError(ctx context.Context, field string, err error) error {
	var ne *nexus.Error
	var pr *nexus.PathRoutingUnsupportedError
	switch {
	case errors.As(err, &pr):
		return conditions.Stalledf(v1alpha1.ReasonPathRoutingUnsupported, "%v", pr)
	case nexus.IsUnauthorized(err):
		return conditions.Stalledf(v1alpha1.ReasonNexusAuthFailed, "%s: %v", field, err)
	case errors.As(err, &ne):
		return conditions.Errorf(v1alpha1.ReasonProvisionFailed, "%v", err)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return err
	default:
		return conditions.Errorf(v1alpha1.ReasonNexusUnreachable, "%v", err)
	}
}

// provisionSummary names the URL shape and the authentication provisioned.
func provisionSummary(rm *v1alpha1.RegistryMirror) string {
	shape := "repository base path"
	if pathRouted(rm.Spec.Endpoint) {
		shape = "path-based routing"
	}
	auth := "Basic authentication"
	if rm.Spec.Provision.Nexus.DockerAuth == v1alpha1.NexusDockerAuthToken {
		auth = "bearer tokens, Docker Bearer Token realm active"
	}
	users := "no users made: credentialsSecretRef serves pulls and pushes"
	if rm.Spec.ManagesNexusUsers() {
		users = fmt.Sprintf("users %s (read) and %s (read, add, edit)",
			credentials.NexusUserID(rm.Name, v1alpha1.NexusPullUser), credentials.NexusUserID(rm.Name, v1alpha1.NexusPushUser))
	}
	return shape + ", " + auth + ", " + users + proxiesSummary(rm)
}

// pathRouted says whether nodes reach the registry at the root of endpoint (no path), the
// shape that needs Nexus's path-based routing.
func pathRouted(endpoint string) bool { return nodeconfig.PathRouted(endpoint) }

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
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: sc.rm.Spec.InsecureSkipVerify} // verification off only when the spec asks
	if len(sc.ca) > 0 {
		b, err := cabundle.Parse(sc.ca)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig.RootCAs = b.Pool()
	}
	// Nexus is reached by the names nodes use: hostAliases cover names DNS does not know.
	if aliases := registryhttp.Aliases(sc.rm.Spec.HostAliases); aliases != nil {
		t.DialContext = registryhttp.AliasDialer(aliases)
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
