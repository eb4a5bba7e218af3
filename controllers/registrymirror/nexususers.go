package registrymirror

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/controllers/internal/credentials"
	"github.com/regwire/regwire/internal/nexus"
)

// nexusUserLabel marks the Secrets holding the passwords of the Nexus users regwire made
// for a mirror; its value is the kind (pull, push). The mirror's name is in
// pullSecretMirrorAnnotation, as on pull secrets, so a change brings the mirror back.
const nexusUserLabel = "regwire.dev/nexus-user"

// nexusUserKinds are the users a mirror with spec.provision.nexus.users Managed gets, and
// the repository view actions of each (Nexus's docker privileges: read to pull; add and
// edit to push; browse lists the repository).
var nexusUserKinds = []struct {
	kind    string
	actions []string
}{
	{v1alpha1.NexusPullUser, []string{nexus.ActionRead, nexus.ActionBrowse}},
	{v1alpha1.NexusPushUser, []string{nexus.ActionRead, nexus.ActionBrowse, nexus.ActionAdd, nexus.ActionEdit}},
}

// provisionUsers makes Nexus hold the mirror's pull and push users, each with a role of
// its own granting only its repository's privileges and the password its Secret keeps
// (generated on first use; delete the Secret to rotate). It returns the Secrets'
// resourceVersions, by kind, as they were when Nexus was given their passwords.
func (r *Reconciler) provisionUsers(ctx context.Context, c *nexus.Client, rm *v1alpha1.RegistryMirror) (map[string]string, error) {
	repo := rm.Spec.Provision.Nexus.Repository
	versions := map[string]string{}
	for _, k := range nexusUserKinds {
		id := credentials.NexusUserID(rm.Name, k.kind)
		privileges := make([]string, 0, len(k.actions))
		for _, a := range k.actions {
			privileges = append(privileges, nexus.DockerViewPrivilege(repo, a))
		}
		if _, err := c.EnsureRole(ctx, &nexus.Role{
			ID: id, Name: id, Privileges: privileges, Roles: []string{},
			Description: fmt.Sprintf("regwire: %s %s for RegistryMirror %s", k.kind, repo, rm.Name),
		}); err != nil {
			return nil, err
		}
		password, version, err := r.nexusUserSecret(ctx, rm, k.kind, id)
		if err != nil {
			return nil, err
		}
		if _, err := c.EnsureUser(ctx, nexus.User{
			UserID: id, FirstName: "regwire", LastName: k.kind + " " + rm.Name, EmailAddress: id + "@regwire.invalid",
			Status: nexus.UserStatusActive, Roles: []string{id},
		}, password); err != nil {
			return nil, err
		}
		versions[k.kind] = version
	}
	return versions, nil
}

// nexusUserSecret returns the password of the user of kind, from its Secret in the
// operator's namespace, creating the Secret with a new password when there is none (or
// none usable). The Secret belongs to the mirror and goes with it.
func (r *Reconciler) nexusUserSecret(ctx context.Context, rm *v1alpha1.RegistryMirror, kind, user string) (password, version string, err error) {
	key := client.ObjectKey{Namespace: r.Namespace, Name: credentials.NexusUserSecretName(rm.Name, kind)}
	s := &corev1.Secret{}
	err = r.APIReader.Get(ctx, key, s)
	switch {
	case apierrors.IsNotFound(err):
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	case err != nil:
		return "", "", fmt.Errorf("reading Secret %s: %w", key, err)
	case ownedByFormer(s, rm):
		// Taken over below, with a password of rm's own.
	case !metav1.IsControlledBy(s, rm):
		return "", "", conditions.Stalledf(v1alpha1.ReasonUserSecretConflict,
			"Secret %s, where the Nexus %s user's password goes, exists and is not this mirror's; delete or rename it", key, kind)
	case s.Type == corev1.SecretTypeBasicAuth && string(s.Data[corev1.BasicAuthUsernameKey]) == user && len(s.Data[corev1.BasicAuthPasswordKey]) >= 16:
		return string(s.Data[corev1.BasicAuthPasswordKey]), s.ResourceVersion, nil
	}
	// New, or not usable as it is (edited by hand): a new password.
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	s.Type = corev1.SecretTypeBasicAuth
	s.Labels = map[string]string{nexusUserLabel: kind, "app.kubernetes.io/managed-by": "regwire"}
	s.Annotations = map[string]string{pullSecretMirrorAnnotation: rm.Name, v1alpha1.RegistryHostAnnotation: string(rm.Spec.Host)}
	s.Data = map[string][]byte{corev1.BasicAuthUsernameKey: []byte(user), corev1.BasicAuthPasswordKey: []byte(password)}
	s.OwnerReferences = nil // a former mirror of this name's reference goes
	if err := controllerutil.SetControllerReference(rm, s, r.Client.Scheme()); err != nil {
		return "", "", err
	}
	if s.ResourceVersion == "" {
		err = r.Client.Create(ctx, s)
	} else {
		err = r.Client.Update(ctx, s) // carries the resourceVersion read: a concurrent edit is a conflict, retried
	}
	if err != nil {
		return "", "", fmt.Errorf("writing Secret %s: %w", key, err)
	}
	return password, s.ResourceVersion, nil
}

// nexusUserSecretsUnchanged says whether the users' Secrets are as they were when Nexus was
// last given their passwords. The Secret cache answers; only when it disagrees (it may not
// have seen regwire's own write yet) is the API server asked.
func (r *Reconciler) nexusUserSecretsUnchanged(ctx context.Context, rm *v1alpha1.RegistryMirror, versions map[string]string) bool {
	if !rm.Spec.ManagesNexusUsers() {
		return len(versions) == 0
	}
	for _, k := range nexusUserKinds {
		key := client.ObjectKey{Namespace: r.Namespace, Name: credentials.NexusUserSecretName(rm.Name, k.kind)}
		if s := (&corev1.Secret{}); r.Secrets.Get(ctx, key, s) == nil && s.ResourceVersion == versions[k.kind] {
			continue
		}
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := r.APIReader.Get(ctx, key, m); err != nil || m.ResourceVersion != versions[k.kind] {
			return false
		}
	}
	return true
}

// ownedByFormer says whether s belongs to an earlier RegistryMirror of rm's name, deleted
// before the garbage collector took its Secrets: rm takes it over with a new password.
func ownedByFormer(s *corev1.Secret, rm *v1alpha1.RegistryMirror) bool {
	ref := metav1.GetControllerOf(s)
	return ref != nil && ref.Kind == "RegistryMirror" && ref.Name == rm.Name && ref.UID != rm.UID &&
		s.Labels[nexusUserLabel] != ""
}

// releaseNexusUsers removes the users and roles regwire made for rm from Nexus and deletes
// their Secrets, once rm no longer wants them (deleted, or users no longer Managed). Only a
// mirror that holds such Secrets (read from the Secret cache) connects to Nexus, through
// connect. When Nexus refuses or cannot be reached, a Warning Event says which users stay
// there, and the Secrets go anyway: their passwords no longer serve anything regwire runs.
func (r *Reconciler) releaseNexusUsers(ctx context.Context, rm *v1alpha1.RegistryMirror, connect func() (*nexus.Client, error)) error {
	var held []*corev1.Secret
	for _, k := range nexusUserKinds {
		s := &corev1.Secret{}
		key := client.ObjectKey{Namespace: r.Namespace, Name: credentials.NexusUserSecretName(rm.Name, k.kind)}
		if err := r.reader().Get(ctx, key, s); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("reading Secret %s: %w", key, err)
		}
		if metav1.IsControlledBy(s, rm) {
			held = append(held, s)
		}
	}
	if len(held) == 0 {
		return nil
	}
	c, err := connect()
	for _, k := range nexusUserKinds {
		if err != nil {
			break
		}
		id := credentials.NexusUserID(rm.Name, k.kind)
		if err = c.DeleteUser(ctx, id); err == nil {
			err = c.DeleteRole(ctx, id)
		}
	}
	if err != nil {
		r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, "NexusUsersNotRemoved", "Release",
			"the Nexus users %s and %s stay in Nexus (remove them there): %v",
			credentials.NexusUserID(rm.Name, v1alpha1.NexusPullUser), credentials.NexusUserID(rm.Name, v1alpha1.NexusPushUser), err)
	}
	for _, s := range held {
		if err := r.Client.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// releaseProvisionedUsers is releaseNexusUsers for a mirror being deleted: Nexus is
// reached as the spec says, when it still says so, and only if there are users to remove.
// The role giving anonymous users read on its proxies goes too.
func (r *Reconciler) releaseProvisionedUsers(ctx context.Context, rm *v1alpha1.RegistryMirror) error {
	ctx, cancel := context.WithTimeout(ctx, nexusTimeout)
	defer cancel()
	if err := r.releaseNexusUsers(ctx, rm, func() (*nexus.Client, error) { return r.nexusForRelease(ctx, rm) }); err != nil {
		return err
	}
	if !wantsAnonymousRead(rm) {
		return nil
	}
	role := credentials.NexusUserID(rm.Name, anonymousRoleKind)
	c, err := r.nexusForRelease(ctx, rm)
	if err == nil {
		err = releaseAnonymousRole(ctx, c, role)
	}
	if err != nil {
		r.Recorder.Eventf(rm, nil, corev1.EventTypeWarning, "NexusRoleNotRemoved", "Release",
			"the role %s stays in Nexus and with its anonymous user, who may still read the proxies (remove it there): %v", role, err)
	}
	return nil
}

// nexusForRelease is the admin client of a mirror being deleted, as its spec says.
func (r *Reconciler) nexusForRelease(ctx context.Context, rm *v1alpha1.RegistryMirror) (*nexus.Client, error) {
	if rm.Spec.Provision == nil || rm.Spec.Provision.Nexus == nil {
		return nil, errors.New("spec.provision.nexus is not set")
	}
	sc := &mirrorScope{rm: rm}
	if !rm.Spec.InsecureSkipVerify {
		var err error
		if sc.ca, _, err = credentials.MirrorCA(ctx, r.reader(), r.secretScope(), rm); err != nil {
			return nil, err
		}
	}
	return r.nexusAdmin(ctx, sc)
}
