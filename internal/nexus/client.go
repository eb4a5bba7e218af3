// Package nexus is a typed client for the parts of Sonatype Nexus Repository 3's REST API
// that regwire uses: status, the admin password, active security realms, docker hosted,
// proxy and group repositories (proxy.go), anonymous access, and the roles and users
// regwire creates for them (security.go). Paths and bodies follow Sonatype's published API
// (https://help.sonatype.com/en/rest-apis.html; /service/rest/v1/...). Errors carry
// Nexus's own text.
package nexus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
)

// Realm ids of Nexus's security realms.
const (
	// RealmLocalAuthenticating is Nexus's own users ("Local Authenticating Realm").
	RealmLocalAuthenticating = "NexusAuthenticatingRealm"
	// RealmDockerToken is the "Docker Bearer Token Realm": docker clients get bearer tokens
	// (and anonymous pulls work when the repository allows them).
	RealmDockerToken = "DockerToken"
)

// Write policies of hosted repositories.
const (
	WritePolicyAllow     = "ALLOW"
	WritePolicyAllowOnce = "ALLOW_ONCE"
	WritePolicyDeny      = "DENY"
)

// DockerHostedRepository is a docker (hosted) repository as Nexus's API describes it.
type DockerHostedRepository struct {
	Name    string        `json:"name"`
	Online  bool          `json:"online"`
	Storage HostedStorage `json:"storage"`
	Docker  Docker        `json:"docker"`
	// Cleanup and Component are kept as Nexus returns them, so an update does not drop them.
	Cleanup   *Cleanup   `json:"cleanup,omitempty"`
	Component *Component `json:"component,omitempty"`
}

// HostedStorage is where a hosted repository keeps content, and how.
type HostedStorage struct {
	BlobStoreName               string `json:"blobStoreName"`
	StrictContentTypeValidation bool   `json:"strictContentTypeValidation"`
	WritePolicy                 string `json:"writePolicy"`
}

// Docker holds the docker-specific attributes: connectors and authentication.
type Docker struct {
	V1Enabled      bool    `json:"v1Enabled"`
	ForceBasicAuth bool    `json:"forceBasicAuth"`
	HTTPPort       *int    `json:"httpPort,omitempty"`
	HTTPSPort      *int    `json:"httpsPort,omitempty"`
	Subdomain      *string `json:"subdomain,omitempty"`
	// PathEnabled allows path-based routing: nexus.local/<repository>/<image>.
	PathEnabled *bool `json:"pathEnabled,omitempty"`
}

// Cleanup names the cleanup policies of a repository.
type Cleanup struct {
	PolicyNames []string `json:"policyNames"`
}

// Component holds component attributes of a repository.
type Component struct {
	ProprietaryComponents bool `json:"proprietaryComponents"`
}

// Error is an answer from Nexus other than the one expected.
type Error struct {
	Method, Path string
	StatusCode   int
	// Message is Nexus's own text: the messages of a validation error list, or the body.
	Message string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("nexus %s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, msg)
}

// IsNotFound reports a 404 from Nexus.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// IsUnauthorized reports a 401 or 403 from Nexus: wrong credentials or missing rights.
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}

// Client talks to one Nexus as one user.
type Client struct {
	base       *url.URL
	user, pass string
	http       *http.Client

	mu     sync.Mutex
	server string // the Server header of Nexus's last answer
}

// Version returns the Nexus version from the Server header of its last answer
// ("Nexus/3.84.0-03 (OSS)" gives "3.84.0"), or "" when Nexus (or a proxy) did not say.
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return serverVersion(c.server)
}

func serverVersion(server string) string {
	rest, ok := strings.CutPrefix(server, "Nexus/")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	v, _, _ = strings.Cut(v, "-") // 3.84.0-03: Sonatype's build number
	parsed, err := semver.NewVersion(v)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", parsed.Major(), parsed.Minor(), parsed.Patch())
}

// New returns a client for the Nexus at baseURL (e.g. https://nexus.local); hc nil means
// http.DefaultClient.
func New(baseURL, user, password string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("nexus URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, user: user, pass: password, http: hc}, nil
}

// do sends a request to path (under /service/rest) and decodes a JSON answer into out when
// the status is one of want.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, out any, want ...int) error {
	u := *c.base
	p, query, _ := strings.Cut(path, "?")
	u.Path += "/service/rest" + p
	u.RawQuery = query
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("nexus %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if server := resp.Header.Get("Server"); server != "" {
		c.mu.Lock()
		c.server = server
		c.mu.Unlock()
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("nexus %s %s: reading the answer: %w", method, path, err)
	}
	if !slices.Contains(want, resp.StatusCode) {
		return &Error{Method: method, Path: path, StatusCode: resp.StatusCode, Message: nexusMessage(b, resp.Header.Get("Content-Type"))}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("nexus %s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// nexusMessage turns an error body into one readable message. Nexus answers errors in
// three shapes: a WebApplicationMessageException is ONE object {"id": "*", "message": ...}
// (ValidationErrorXO; nexus-public components/nexus-rest WebApplicationMessageException and
// its test), whose message is itself often a quoted JSON string; bean-validation failures are
// a LIST of such objects with ids like "PARAMETER name" (ResteasyViolationExceptionMapper);
// older versions and some resources answer text/plain (e.g. RealmApiResource's
// "Unknown realmIds: [X]").
func nexusMessage(b []byte, contentType string) string {
	type item struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	}
	text := func(it item) string {
		msg := it.Message
		var unquoted string
		if json.Unmarshal([]byte(msg), &unquoted) == nil {
			msg = unquoted // "\"Repository not found\"" is Repository not found
		}
		if it.ID != "" && it.ID != "*" {
			return it.ID + ": " + msg
		}
		return msg
	}
	trimmed := bytes.TrimSpace(b)
	var list []item
	if json.Unmarshal(trimmed, &list) == nil && len(list) > 0 {
		msgs := make([]string, 0, len(list))
		for _, it := range list {
			msgs = append(msgs, text(it))
		}
		return strings.Join(msgs, "; ")
	}
	var one item
	if json.Unmarshal(trimmed, &one) == nil && one.Message != "" {
		return text(one)
	}
	s := string(trimmed)
	if strings.HasPrefix(contentType, "text/html") {
		s = "" // an HTML error page says nothing a user can act on: Error shows the status
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Writable returns nil when Nexus is up and can take writes (GET /v1/status/writable).
func (c *Client) Writable(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/status/writable", "", nil, nil, http.StatusOK)
}

// ChangePassword sets user's password (PUT /v1/security/users/{user}/change-password, the
// new password as text/plain).
func (c *Client) ChangePassword(ctx context.Context, user, password string) error {
	if password == "" {
		return errors.New("nexus: the new password is empty")
	}
	return c.do(ctx, http.MethodPut, "/v1/security/users/"+url.PathEscape(user)+"/change-password", "text/plain", []byte(password), nil, http.StatusNoContent)
}

// ActiveRealms returns the active security realms, in order (GET /v1/security/realms/active).
func (c *Client) ActiveRealms(ctx context.Context) ([]string, error) {
	var realms []string
	err := c.do(ctx, http.MethodGet, "/v1/security/realms/active", "", nil, &realms, http.StatusOK)
	return realms, err
}

// SetActiveRealms replaces the active realms (PUT /v1/security/realms/active).
func (c *Client) SetActiveRealms(ctx context.Context, realms []string) error {
	b, err := json.Marshal(realms)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, "/v1/security/realms/active", "application/json", b, nil, http.StatusNoContent)
}

// EnsureRealm activates realm after the active ones unless it is active already, and
// reports whether it changed anything.
func (c *Client) EnsureRealm(ctx context.Context, realm string) (bool, error) {
	realms, err := c.ActiveRealms(ctx)
	if err != nil {
		return false, err
	}
	if slices.Contains(realms, realm) {
		return false, nil
	}
	return true, c.SetActiveRealms(ctx, append(realms, realm))
}

// DockerHosted reads a docker (hosted) repository (GET /v1/repositories/docker/hosted/{name}).
func (c *Client) DockerHosted(ctx context.Context, name string) (*DockerHostedRepository, error) {
	r := &DockerHostedRepository{}
	if err := c.do(ctx, http.MethodGet, "/v1/repositories/docker/hosted/"+url.PathEscape(name), "", nil, r, http.StatusOK); err != nil {
		return nil, err
	}
	return r, nil
}

// CreateDockerHosted creates a docker (hosted) repository (POST /v1/repositories/docker/hosted).
func (c *Client) CreateDockerHosted(ctx context.Context, r *DockerHostedRepository) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v1/repositories/docker/hosted", "application/json", b, nil, http.StatusCreated)
}

// UpdateDockerHosted replaces a docker (hosted) repository's settings
// (PUT /v1/repositories/docker/hosted/{name}).
func (c *Client) UpdateDockerHosted(ctx context.Context, r *DockerHostedRepository) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, "/v1/repositories/docker/hosted/"+url.PathEscape(r.Name), "application/json", b, nil, http.StatusNoContent)
}

// Action says what EnsureDockerHosted did.
type Action string

// Actions of EnsureDockerHosted.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// PathRoutingVersion is the first Nexus version with per-repository path-based routing
// (docker.pathEnabled): absent from Sonatype's generated OpenAPI at 3.82.1, present from
// 3.84.0; 3.83.0 introduced it.
const PathRoutingVersion = "3.83.0"

var pathRoutingVersion = semver.MustParse(PathRoutingVersion)

// PathRoutingUnsupportedError is a Nexus that does not keep docker.pathEnabled: older than
// PathRoutingVersion, it drops the field without an error, and nexus.local/<repo>/<image>
// reaches no repository.
type PathRoutingUnsupportedError struct {
	// Version is the version Nexus reported, "" when it did not say.
	Version string
	// Repository is the docker (hosted) repository.
	Repository string
}

func (e *PathRoutingUnsupportedError) Error() string {
	found := "a version that does not say which"
	if e.Version != "" {
		found = e.Version
	}
	return fmt.Sprintf("Nexus %s does not keep path-based routing (docker.pathEnabled) for repository %s; it needs Nexus %s or later. "+
		"Upgrade Nexus, or use the repository base path instead: endpoint https://<host>/repository/%s/v2 (images then do not carry the repository name)",
		found, e.Repository, PathRoutingVersion, e.Repository)
}

// EnsureDockerHosted creates want, or updates the repository of that name to match it.
// Only the fields regwire manages change: everything else Nexus holds (latestPolicy,
// cleanup, component, connectors, fields of newer versions) is sent back as Nexus gave it,
// since Nexus ignores fields it does not know and resets those an update leaves out.
// With want.Docker.PathEnabled true, a Nexus older than PathRoutingVersion, or one that does
// not keep the field after the write, is a *PathRoutingUnsupportedError.
func (c *Client) EnsureDockerHosted(ctx context.Context, want *DockerHostedRepository) (Action, error) {
	path := "/v1/repositories/docker/hosted/" + url.PathEscape(want.Name)
	var have map[string]any
	err := c.do(ctx, http.MethodGet, path, "", nil, &have, http.StatusOK)
	routing := want.Docker.PathEnabled != nil && *want.Docker.PathEnabled
	if routing {
		if v := c.Version(); v != "" && semver.MustParse(v).LessThan(pathRoutingVersion) {
			return "", &PathRoutingUnsupportedError{Version: v, Repository: want.Name}
		}
	}
	action := Created
	switch {
	case IsNotFound(err):
		if err := c.CreateDockerHosted(ctx, want); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	default:
		merged, changed, err := overlay(have, want)
		if err != nil {
			return "", err
		}
		if !changed {
			return Unchanged, nil
		}
		b, err := json.Marshal(merged)
		if err != nil {
			return "", err
		}
		if err := c.do(ctx, http.MethodPut, path, "application/json", b, nil, http.StatusNoContent); err != nil {
			return "", err
		}
		action = Updated
	}
	if routing {
		got, err := c.DockerHosted(ctx, want.Name)
		if err != nil {
			return "", err
		}
		if got.Docker.PathEnabled == nil || !*got.Docker.PathEnabled {
			return "", &PathRoutingUnsupportedError{Version: c.Version(), Repository: want.Name}
		}
	}
	return action, nil
}

// overlay sets the fields want manages on have (Nexus's answer, as a JSON object) and
// says whether any of them changed. Fields want leaves unset (connectors, subdomain,
// pathEnabled when nil, cleanup, component) keep what Nexus has.
func overlay(have map[string]any, want *DockerHostedRepository) (map[string]any, bool, error) {
	b, err := json.Marshal(want)
	if err != nil {
		return nil, false, err
	}
	var w map[string]any
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, false, err
	}
	merged, changed := merge(have, w)
	return merged, changed, nil
}

// merge sets every field of w on have, recursively, and says whether any differed.
func merge(have, w map[string]any) (map[string]any, bool) {
	changed := false
	var into func(dst, src map[string]any)
	into = func(dst, src map[string]any) {
		for k, v := range src {
			if sub, ok := v.(map[string]any); ok {
				d, ok := dst[k].(map[string]any)
				if !ok {
					d = map[string]any{}
					dst[k] = d
				}
				into(d, sub)
				continue
			}
			old := dst[k]
			if s, ok := old.(string); ok && k == "writePolicy" {
				old = strings.ToUpper(s) // older versions answer in lower case
			}
			if !equalJSON(old, v) {
				changed = true
			}
			dst[k] = v
		}
	}
	into(have, w)
	return have, changed
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
