package nexus

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Index types of a docker proxy repository (DockerProxyAttributes.indexType).
const (
	IndexTypeHub      = "HUB"
	IndexTypeRegistry = "REGISTRY"
)

// DockerProxyRepository is a docker (proxy) repository as Nexus's API describes it
// (DockerProxyRepositoryApiRequest: ProxyRepositoryApiRequest with docker and dockerProxy).
type DockerProxyRepository struct {
	Name          string        `json:"name"`
	Online        bool          `json:"online"`
	Storage       Storage       `json:"storage"`
	Proxy         Proxy         `json:"proxy"`
	NegativeCache NegativeCache `json:"negativeCache"`
	HTTPClient    HTTPClient    `json:"httpClient"`
	Docker        Docker        `json:"docker"`
	DockerProxy   DockerProxy   `json:"dockerProxy"`
}

// Storage is where a proxy or group repository keeps content.
type Storage struct {
	BlobStoreName               string `json:"blobStoreName"`
	StrictContentTypeValidation bool   `json:"strictContentTypeValidation"`
}

// Proxy is the remote a proxy repository serves, and how long it keeps what it fetched
// before asking again (minutes).
type Proxy struct {
	RemoteURL      string `json:"remoteUrl"`
	ContentMaxAge  int    `json:"contentMaxAge"`
	MetadataMaxAge int    `json:"metadataMaxAge"`
}

// NegativeCache keeps "not found" answers of the remote for TimeToLive minutes.
type NegativeCache struct {
	Enabled    bool `json:"enabled"`
	TimeToLive int  `json:"timeToLive"`
}

// HTTPClient is how a proxy repository connects to its remote.
type HTTPClient struct {
	Blocked   bool `json:"blocked"`
	AutoBlock bool `json:"autoBlock"`
	// Authentication is the remote's credentials; Nexus never answers the password
	// (write-only), so a read shows only Type and Username.
	Authentication *Authentication `json:"authentication,omitempty"`
}

// Authentication is a proxy repository's credentials at its remote.
type Authentication struct {
	Type     string `json:"type"` // "username"
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
}

// DockerProxy holds the docker proxy attributes: which index the remote is.
type DockerProxy struct {
	IndexType string `json:"indexType"`
	IndexURL  string `json:"indexUrl,omitempty"`
}

// DockerGroupRepository is a docker (group) repository (DockerGroupRepositoryApiRequest).
type DockerGroupRepository struct {
	Name    string  `json:"name"`
	Online  bool    `json:"online"`
	Storage Storage `json:"storage"`
	Group   Group   `json:"group"`
	Docker  Docker  `json:"docker"`
}

// Group lists a group repository's members, searched in this order.
type Group struct {
	MemberNames []string `json:"memberNames"`
}

// EnsureDockerProxy creates want, or updates the repository of that name to match it,
// keeping what Nexus holds that want leaves unset. Nexus never says a remote's password:
// it is sent when the repository is created, when anything else changes, and when
// sendPassword says the password may have changed since it was last sent; a password
// sent alone does not count as a change.
func (c *Client) EnsureDockerProxy(ctx context.Context, want *DockerProxyRepository, sendPassword bool) (Action, error) {
	return c.ensure(ctx, "proxy", want.Name, want, func(merged map[string]any) {
		if a := want.HTTPClient.Authentication; a != nil {
			hc, _ := merged["httpClient"].(map[string]any)
			if auth, ok := hc["authentication"].(map[string]any); ok {
				auth["password"] = a.Password
			}
		}
	}, sendPassword && want.HTTPClient.Authentication != nil)
}

// EnsureDockerGroup creates want, or updates the group of that name to match it (its
// members in want's order).
func (c *Client) EnsureDockerGroup(ctx context.Context, want *DockerGroupRepository) (Action, error) {
	return c.ensure(ctx, "group", want.Name, want, nil, false)
}

// ensure is EnsureDocker* for repositories of kind: GET, then POST or PUT what changed.
// withSecrets puts write-only fields into the body sent; force sends an update even when
// nothing readable changed.
func (c *Client) ensure(ctx context.Context, kind, name string, want any, withSecrets func(map[string]any), force bool) (Action, error) {
	path := "/v1/repositories/docker/" + kind + "/" + url.PathEscape(name)
	var have map[string]any
	getErr := c.do(ctx, http.MethodGet, path, "", nil, &have, http.StatusOK)
	if getErr != nil && !IsNotFound(getErr) {
		return "", getErr
	}
	readable, err := withoutPassword(want)
	if err != nil {
		return "", err
	}
	if IsNotFound(getErr) {
		b, err := json.Marshal(want)
		if err != nil {
			return "", err
		}
		if err := c.do(ctx, http.MethodPost, "/v1/repositories/docker/"+kind, "application/json", b, nil, http.StatusCreated); err != nil {
			return "", err
		}
		return Created, c.readBack(ctx, path, kind, name, readable)
	}
	merged, changed := merge(have, readable)
	if !changed && !force {
		return Unchanged, nil
	}
	if withSecrets != nil {
		withSecrets(merged)
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return "", err
	}
	if err := c.do(ctx, http.MethodPut, path, "application/json", b, nil, http.StatusNoContent); err != nil {
		return "", err
	}
	if !changed {
		return Unchanged, nil // only the password went again
	}
	return Updated, c.readBack(ctx, path, kind, name, readable)
}

// readBack reads a repository just written and says which of the fields sent Nexus did not
// keep (a field this version does not know is dropped without an error).
func (c *Client) readBack(ctx context.Context, path, kind, name string, sent map[string]any) error {
	var have map[string]any
	if err := c.do(ctx, http.MethodGet, path, "", nil, &have, http.StatusOK); err != nil {
		return err
	}
	if lost := differences(have, sent, ""); len(lost) > 0 {
		version := c.Version()
		if version == "" {
			version = "(a version that does not say which)"
		}
		return fmt.Errorf("nexus %s did not keep %s of docker (%s) repository %s as sent: it may not know them; upgrade Nexus or leave them out", version, strings.Join(lost, ", "), kind, name)
	}
	return nil
}

// differences lists, as dotted paths, the fields of want that have lacks or holds
// otherwise.
func differences(have, want map[string]any, prefix string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if sub, ok := want[k].(map[string]any); ok {
			h, _ := have[k].(map[string]any)
			out = append(out, differences(h, sub, prefix+k+".")...)
			continue
		}
		if !equalJSON(have[k], want[k]) {
			out = append(out, prefix+k)
		}
	}
	return out
}

// withoutPassword is want as a JSON object without the remote's password, which a read
// never shows.
func withoutPassword(want any) (map[string]any, error) {
	b, err := json.Marshal(want)
	if err != nil {
		return nil, err
	}
	var w map[string]any
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	if hc, ok := w["httpClient"].(map[string]any); ok {
		if a, ok := hc["authentication"].(map[string]any); ok {
			delete(a, "password")
		}
	}
	return w, nil
}

// AnonymousSettings is Nexus's anonymous access (AnonymousAccessSettingsXO,
// /v1/security/anonymous): whether requests without credentials run as UserID of
// RealmName.
type AnonymousSettings struct {
	Enabled   bool   `json:"enabled"`
	UserID    string `json:"userId"`
	RealmName string `json:"realmName"`
}

// The defaults of anonymous access (nexus-public AnonymousConfiguration): the built-in
// user "anonymous" of the authorizing realm. The Docker Bearer Token realm gives
// anonymous tokens to that user only (nexus-public#311).
const (
	AnonymousUser  = "anonymous"
	AnonymousRealm = "NexusAuthorizingRealm"
)

// Anonymous reads the anonymous access settings (GET /v1/security/anonymous).
func (c *Client) Anonymous(ctx context.Context) (AnonymousSettings, error) {
	var s AnonymousSettings
	err := c.do(ctx, http.MethodGet, "/v1/security/anonymous", "", nil, &s, http.StatusOK)
	return s, err
}

// SetAnonymous replaces the anonymous access settings (PUT /v1/security/anonymous).
func (c *Client) SetAnonymous(ctx context.Context, s AnonymousSettings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, "/v1/security/anonymous", "application/json", b, nil, http.StatusOK)
}

// SetUserRoles adds the roles in add to user id and takes those in remove away, leaving
// the rest of the user as it is; it reports whether the user changed. A user that does
// not exist is an error.
func (c *Client) SetUserRoles(ctx context.Context, id string, add, remove []string) (bool, error) {
	have, err := c.FindUser(ctx, id)
	if err != nil {
		return false, err
	}
	if have == nil {
		return false, &Error{Method: http.MethodGet, Path: "/v1/security/users?userId=" + id, StatusCode: http.StatusNotFound, Message: "User '" + id + "' not found."}
	}
	roles := slices.DeleteFunc(slices.Clone(have.Roles), func(r string) bool { return slices.Contains(remove, r) })
	for _, r := range add {
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	if sameSet(roles, have.Roles) {
		return false, nil
	}
	u := *have
	u.Roles, u.Password = roles, ""
	if u.Source == "" {
		u.Source = "default"
	}
	b, err := json.Marshal(u)
	if err != nil {
		return false, err
	}
	return true, c.do(ctx, http.MethodPut, "/v1/security/users/"+url.PathEscape(id), "application/json", b, nil, http.StatusNoContent)
}

// Role reads a role (GET /v1/security/roles/{id}); nil when there is none.
func (c *Client) Role(ctx context.Context, id string) (*Role, error) {
	var r Role
	err := c.do(ctx, http.MethodGet, "/v1/security/roles/"+url.PathEscape(id), "", nil, &r, http.StatusOK)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ReadersOf returns the roles of user id (its own and those they contain) that give
// read access to the docker repository repo, each as "role (privilege)": nx-all,
// nx-repository-view-*-*-read, nx-repository-view-docker-*-read, the repository's own read
// privilege, or their "*" action. Roles Nexus does not answer (of other sources) are not
// looked into.
func (c *Client) ReadersOf(ctx context.Context, id, repo string) ([]string, error) {
	u, err := c.FindUser(ctx, id)
	if err != nil || u == nil {
		return nil, err
	}
	reads := func(p string) bool {
		if p == "nx-all" {
			return true
		}
		rest, ok := strings.CutPrefix(p, "nx-repository-view-")
		if !ok {
			return false
		}
		for _, format := range []string{"*-", "docker-"} {
			if r, ok := strings.CutPrefix(rest, format); ok {
				for _, target := range []string{"*-", repo + "-"} {
					if action, ok := strings.CutPrefix(r, target); ok && (action == "read" || action == "*") {
						return true
					}
				}
			}
		}
		return false
	}
	var out []string
	seen := map[string]bool{}
	queue := slices.Clone(u.Roles)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if seen[id] {
			continue
		}
		seen[id] = true
		r, err := c.Role(ctx, id)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		for _, p := range r.Privileges {
			if reads(p) {
				out = append(out, id+" ("+p+")")
			}
		}
		queue = append(queue, r.Roles...)
	}
	return out, nil
}
