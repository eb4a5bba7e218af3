package registrymirror

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strings"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/internal/conditions"
	"github.com/regwire/regwire/controllers/internal/credentials"
	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/pullsecret"
)

// dockerHubRemote is Docker Hub's registry API: docker.io is its name in image
// references, not where it serves.
const dockerHubRemote = "https://registry-1.docker.io"

// defaultNegativeCacheMinutes is Nexus's own default negative cache time to live.
const defaultNegativeCacheMinutes = 1440

// proxiesResult is what provisionProxies did.
type proxiesResult struct {
	// upstreamSecrets are the resourceVersions of the proxies' upstream credentials
	// Secrets, by upstream, as they were when Nexus was given their passwords.
	upstreamSecrets map[string]string
	// changed names the repositories created or updated ("docker-hub created").
	changed []string
	// hostedReaders are the anonymous user's roles (and privileges) that let it read the
	// hosted repository; regwire gave none of them.
	hostedReaders []string
}

// provisionProxies makes Nexus hold the mirror's proxy repositories, the group joining
// them with the hosted repository, and, with anonymousRead Proxies, read on the proxies
// for anonymous users. sent are the upstream Secrets' versions whose passwords Nexus was
// given at the last check: a password is sent again only when its Secret changed since
// (Nexus never says a password back). Problems the user must fix are *conditions.Error.
func (r *Reconciler) provisionProxies(ctx context.Context, c *nexus.Client, rm *v1alpha1.RegistryMirror, sent map[string]string) (proxiesResult, error) {
	p := rm.Spec.Provision.Nexus
	res := proxiesResult{upstreamSecrets: map[string]string{}}
	if len(p.Proxies) > 0 {
		// Proxies answer with bearer tokens (forceBasicAuth off): what anonymous pulls
		// need, and docker clients with credentials follow too.
		if _, err := c.EnsureRealm(ctx, nexus.RealmDockerToken); err != nil {
			return res, err
		}
	}
	for i, px := range p.Proxies {
		want, version, err := r.proxyRepository(ctx, rm, i, px)
		if err != nil {
			return res, err
		}
		action, err := c.EnsureDockerProxy(ctx, want, version != "" && sent[string(px.Upstream)] != version)
		if err != nil {
			return res, err
		}
		if version != "" {
			res.upstreamSecrets[string(px.Upstream)] = version
		}
		if action != nexus.Unchanged {
			res.changed = append(res.changed, fmt.Sprintf("docker (proxy) %s %s", px.Repository, action))
		}
	}
	if g := p.Group; g != nil {
		members := []string{p.Repository}
		for _, px := range p.Proxies {
			members = append(members, px.Repository)
		}
		docker := nexus.Docker{ForceBasicAuth: p.DockerAuth != v1alpha1.NexusDockerAuthToken}
		if pathRouted(rm.Spec.Endpoint) {
			docker.PathEnabled = new(true) // <host>/<group>/<image>, as for the hosted repository
		}
		action, err := c.EnsureDockerGroup(ctx, &nexus.DockerGroupRepository{
			Name: g.Repository, Online: true,
			Storage: nexus.Storage{BlobStoreName: p.BlobStore, StrictContentTypeValidation: true},
			Group:   nexus.Group{MemberNames: members},
			Docker:  docker,
		})
		if err != nil {
			return res, err
		}
		if action != nexus.Unchanged {
			res.changed = append(res.changed, fmt.Sprintf("docker (group) %s %s", g.Repository, action))
		}
	}
	readers, err := r.provisionAnonymousRead(ctx, c, rm)
	res.hostedReaders = readers
	return res, err
}

// proxyRepository is the proxy repository px asks for (the i-th of the mirror's), with its
// upstream credentials when it names a Secret, and that Secret's resourceVersion.
func (r *Reconciler) proxyRepository(ctx context.Context, rm *v1alpha1.RegistryMirror, i int, px v1alpha1.NexusProxy) (*nexus.DockerProxyRepository, string, error) {
	p := rm.Spec.Provision.Nexus
	remote := proxyRemote(px)
	index := nexus.IndexTypeRegistry
	if px.Upstream == "docker.io" {
		index = nexus.IndexTypeHub
	}
	ttl := defaultNegativeCacheMinutes
	if px.NegativeCacheTTL != nil {
		ttl = max(1, int(math.Ceil(px.NegativeCacheTTL.Minutes())))
	}
	want := &nexus.DockerProxyRepository{
		Name: px.Repository, Online: true,
		Storage:       nexus.Storage{BlobStoreName: p.BlobStore, StrictContentTypeValidation: true},
		Proxy:         nexus.Proxy{RemoteURL: remote, ContentMaxAge: defaultNegativeCacheMinutes, MetadataMaxAge: defaultNegativeCacheMinutes},
		NegativeCache: nexus.NegativeCache{Enabled: true, TimeToLive: ttl},
		HTTPClient:    nexus.HTTPClient{AutoBlock: true},
		Docker:        nexus.Docker{ForceBasicAuth: false},
		DockerProxy:   nexus.DockerProxy{IndexType: index},
	}
	if pathRouted(rm.Spec.Endpoint) {
		// Nodes reach it at /v2/<repository> (nodeconfig.ProxyPath), as the hosted one.
		want.Docker.PathEnabled = new(true)
	}
	ref := px.CredentialsSecretRef
	if ref == nil {
		return want, "", nil
	}
	field := fmt.Sprintf("spec.provision.nexus.proxies[%d].credentialsSecretRef", i)
	if err := r.secretScope().Check(field, ref.Namespace); err != nil {
		return nil, "", err
	}
	s, err := credentials.Secret(ctx, r.reader(), ref.Namespace, ref.Name, field)
	if err != nil {
		return nil, "", err
	}
	user, pass, err := pullsecret.Credentials(hostOfURL(remote), s, field)
	if err != nil {
		return nil, "", conditions.Stalledf(v1alpha1.ReasonCredentialsInvalid, "%s", err.Error())
	}
	want.HTTPClient.Authentication = &nexus.Authentication{Type: "username", Username: user, Password: pass}
	return want, s.ResourceVersion, nil
}

// proxyRemote is the registry API a proxy of px's upstream fetches from.
func proxyRemote(px v1alpha1.NexusProxy) string {
	switch {
	case px.RemoteURL != "":
		return px.RemoteURL
	case px.Upstream == "docker.io":
		return dockerHubRemote
	default:
		return (&url.URL{Scheme: "https", Host: string(px.Upstream)}).String()
	}
}

// anonymousRoleKind names the role giving anonymous users read on a mirror's proxies:
// regwire-<mirror>-anonymous.
const anonymousRoleKind = "anonymous"

// wantsAnonymousRead says whether the mirror gives anonymous users read on its proxies.
func wantsAnonymousRead(rm *v1alpha1.RegistryMirror) bool {
	p := rm.Spec.Provision
	return p != nil && p.Nexus != nil && len(p.Nexus.Proxies) > 0 && p.Nexus.AnonymousRead != v1alpha1.NexusAnonymousReadNone
}

// provisionAnonymousRead gives Nexus's anonymous user read on the mirror's proxies (a role
// of its own), turning anonymous access on where it is off, and then without the built-in
// nx-anonymous role, which reads every repository. Where it was on already its roles stay:
// it returns those that let anonymous users read the hosted repository. A mirror that no
// longer wants anonymous read has its role taken away.
func (r *Reconciler) provisionAnonymousRead(ctx context.Context, c *nexus.Client, rm *v1alpha1.RegistryMirror) ([]string, error) {
	p := rm.Spec.Provision.Nexus
	roleID := credentials.NexusUserID(rm.Name, anonymousRoleKind)
	if !wantsAnonymousRead(rm) {
		return nil, releaseAnonymousRole(ctx, c, roleID)
	}
	settings, err := c.Anonymous(ctx)
	if err != nil {
		return nil, err
	}
	if settings.Enabled && settings.UserID != nexus.AnonymousUser {
		return nil, conditions.Stalledf(v1alpha1.ReasonAnonymousAccessUnusable,
			"Nexus's anonymous access runs as user %q, but its Docker Bearer Token realm gives anonymous tokens only to the built-in user %q (nexus-public#311): "+
				"set Security → Anonymous Access back to user %q, or set spec.provision.nexus.anonymousRead: None (nodes then need credentials, which runtimes do not send to a mirror)",
			settings.UserID, nexus.AnonymousUser, nexus.AnonymousUser)
	}
	privileges := make([]string, 0, 2*len(p.Proxies))
	for _, px := range p.Proxies {
		privileges = append(privileges, nexus.DockerViewPrivilege(px.Repository, nexus.ActionRead), nexus.DockerViewPrivilege(px.Repository, nexus.ActionBrowse))
	}
	if _, err := c.EnsureRole(ctx, &nexus.Role{
		ID: roleID, Name: roleID, Privileges: privileges, Roles: []string{},
		Description: fmt.Sprintf("regwire: anonymous read of the proxies of RegistryMirror %s", rm.Name),
	}); err != nil {
		return nil, err
	}
	var remove []string
	if !settings.Enabled {
		// Turning anonymous access on would publish every repository through the
		// built-in role: the anonymous user keeps only what regwire gives it.
		remove = []string{"nx-anonymous"}
	}
	if _, err := c.SetUserRoles(ctx, nexus.AnonymousUser, []string{roleID}, remove); err != nil {
		return nil, err
	}
	if !settings.Enabled {
		if err := c.SetAnonymous(ctx, nexus.AnonymousSettings{Enabled: true, UserID: nexus.AnonymousUser, RealmName: nexus.AnonymousRealm}); err != nil {
			return nil, err
		}
	}
	readers, err := c.ReadersOf(ctx, nexus.AnonymousUser, p.Repository)
	if err != nil {
		return nil, err
	}
	return readers, nil
}

// releaseAnonymousRole takes the role giving anonymous read on a mirror's proxies from
// the anonymous user and deletes it; a role that is not there costs one read.
func releaseAnonymousRole(ctx context.Context, c *nexus.Client, roleID string) error {
	role, err := c.Role(ctx, roleID)
	if err != nil || role == nil {
		return err
	}
	if _, err := c.SetUserRoles(ctx, nexus.AnonymousUser, nil, []string{roleID}); err != nil && !nexus.IsNotFound(err) {
		return err
	}
	return c.DeleteRole(ctx, roleID)
}

// proxiesSummary says what the Provisioned condition adds for proxies, a group and
// anonymous read.
func proxiesSummary(rm *v1alpha1.RegistryMirror) string {
	p := rm.Spec.Provision.Nexus
	if len(p.Proxies) == 0 && p.Group == nil {
		return ""
	}
	var parts []string
	for _, px := range p.Proxies {
		parts = append(parts, fmt.Sprintf("proxy %s of %s (%s)", px.Repository, px.Upstream, proxyRemote(px)))
	}
	if p.Group != nil {
		parts = append(parts, "group "+p.Group.Repository)
	}
	if wantsAnonymousRead(rm) {
		parts = append(parts, "anonymous read on the proxies only")
	} else if len(p.Proxies) > 0 {
		parts = append(parts, "no anonymous read")
	}
	return "; " + strings.Join(parts, ", ")
}
