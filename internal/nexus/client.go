// Package nexus is a typed client for the parts of Sonatype Nexus Repository 3's REST API
// that regwire uses: status, the admin password, active security realms and docker
// (hosted) repositories. Paths and bodies follow Sonatype's published API
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
	u.Path += "/service/rest" + path
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
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("nexus %s %s: reading the answer: %w", method, path, err)
	}
	if !slices.Contains(want, resp.StatusCode) {
		return &Error{Method: method, Path: path, StatusCode: resp.StatusCode, Message: nexusMessage(b)}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("nexus %s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// nexusMessage turns an error body into text: Nexus's validation errors are a JSON list of
// {id, message}; other errors are text or HTML.
func nexusMessage(b []byte) string {
	var list []struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &list) == nil && len(list) > 0 {
		msgs := make([]string, 0, len(list))
		for _, e := range list {
			if e.ID != "" && e.ID != "*" {
				msgs = append(msgs, e.ID+": "+e.Message)
			} else {
				msgs = append(msgs, e.Message)
			}
		}
		return strings.Join(msgs, "; ")
	}
	s := strings.TrimSpace(string(b))
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

// EnsureDockerHosted creates want, or updates the repository of that name to match it;
// fields want leaves unset (cleanup, component, connectors) keep what Nexus has.
func (c *Client) EnsureDockerHosted(ctx context.Context, want *DockerHostedRepository) (Action, error) {
	have, err := c.DockerHosted(ctx, want.Name)
	if IsNotFound(err) {
		return Created, c.CreateDockerHosted(ctx, want)
	} else if err != nil {
		return "", err
	}
	have.Storage.WritePolicy = strings.ToUpper(have.Storage.WritePolicy) // older versions answer in lower case
	merged := *want
	if merged.Cleanup == nil {
		merged.Cleanup = have.Cleanup
	}
	if merged.Component == nil {
		merged.Component = have.Component
	}
	d := &merged.Docker
	if d.HTTPPort == nil {
		d.HTTPPort = have.Docker.HTTPPort
	}
	if d.HTTPSPort == nil {
		d.HTTPSPort = have.Docker.HTTPSPort
	}
	if d.Subdomain == nil {
		d.Subdomain = have.Docker.Subdomain
	}
	if d.PathEnabled == nil {
		d.PathEnabled = have.Docker.PathEnabled
	}
	a, _ := json.Marshal(have)
	b, _ := json.Marshal(&merged)
	if bytes.Equal(a, b) {
		return Unchanged, nil
	}
	return Updated, c.UpdateDockerHosted(ctx, &merged)
}
