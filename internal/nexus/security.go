package nexus

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
)

// Role is a Nexus role of the default source (RoleXORequest: /v1/security/roles).
type Role struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Privileges  []string `json:"privileges"`
	Roles       []string `json:"roles"`
}

// User is a Nexus user of the default source, as ApiUser describes it
// (/v1/security/users). Password is sent only when the user is created.
type User struct {
	UserID       string   `json:"userId"`
	FirstName    string   `json:"firstName"`
	LastName     string   `json:"lastName"`
	EmailAddress string   `json:"emailAddress"`
	Password     string   `json:"password,omitempty"`
	Source       string   `json:"source,omitempty"`
	Status       string   `json:"status"`
	Roles        []string `json:"roles"`
}

// UserStatusActive is the status of a user who may log in (ApiUserStatus).
const UserStatusActive = "active"

// Repository view actions (Nexus's BREAD actions).
const (
	ActionBrowse = "browse"
	ActionRead   = "read"
	ActionAdd    = "add"
	ActionEdit   = "edit"
)

// DockerViewPrivilege is the privilege Nexus creates with a docker repository for one
// action on its content: nx-repository-view-docker-<repository>-<action>.
func DockerViewPrivilege(repository, action string) string {
	return "nx-repository-view-docker-" + repository + "-" + action
}

// EnsureRole creates want, or updates the role of that id to match it
// (GET, then POST or PUT /v1/security/roles).
func (c *Client) EnsureRole(ctx context.Context, want *Role) (Action, error) {
	path := "/v1/security/roles/" + url.PathEscape(want.ID)
	var have Role
	err := c.do(ctx, http.MethodGet, path, "", nil, &have, http.StatusOK)
	b, jerr := json.Marshal(want)
	if jerr != nil {
		return "", jerr
	}
	switch {
	case IsNotFound(err):
		return Created, c.do(ctx, http.MethodPost, "/v1/security/roles", "application/json", b, nil, http.StatusOK)
	case err != nil:
		return "", err
	case have.Name == want.Name && have.Description == want.Description && sameSet(have.Privileges, want.Privileges) && sameSet(have.Roles, want.Roles):
		return Unchanged, nil
	}
	return Updated, c.do(ctx, http.MethodPut, path, "application/json", b, nil, http.StatusNoContent)
}

// FindUser returns the user of the default source whose id is exactly id, or nil. Nexus's
// userId parameter is a search term (ids that start with it), so the answer is filtered.
func (c *Client) FindUser(ctx context.Context, id string) (*User, error) {
	var users []User
	q := url.Values{"userId": {id}, "source": {"default"}}
	if err := c.do(ctx, http.MethodGet, "/v1/security/users?"+q.Encode(), "", nil, &users, http.StatusOK); err != nil {
		return nil, err
	}
	for i := range users {
		if users[i].UserID == id {
			return &users[i], nil
		}
	}
	return nil, nil
}

// EnsureUser makes want exist with its roles, status and names, and with password: a new
// user is created with it; an existing one is updated where it differs and given the
// password again (Nexus cannot say what a password is, only take a new one).
func (c *Client) EnsureUser(ctx context.Context, want User, password string) (Action, error) {
	have, err := c.FindUser(ctx, want.UserID)
	if err != nil {
		return "", err
	}
	if have == nil {
		want.Password = password
		b, err := json.Marshal(want)
		if err != nil {
			return "", err
		}
		return Created, c.do(ctx, http.MethodPost, "/v1/security/users", "application/json", b, nil, http.StatusOK)
	}
	action := Unchanged
	want.Password, want.Source = "", "default"
	if have.FirstName != want.FirstName || have.LastName != want.LastName || have.EmailAddress != want.EmailAddress ||
		have.Status != want.Status || !sameSet(have.Roles, want.Roles) {
		b, err := json.Marshal(want)
		if err != nil {
			return "", err
		}
		if err := c.do(ctx, http.MethodPut, "/v1/security/users/"+url.PathEscape(want.UserID), "application/json", b, nil, http.StatusNoContent); err != nil {
			return "", err
		}
		action = Updated
	}
	return action, c.ChangePassword(ctx, want.UserID, password)
}

// DeleteUser deletes a user; one that does not exist is not an error.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/security/users/"+url.PathEscape(id), "", nil, nil, http.StatusNoContent)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// DeleteRole deletes a role; one that does not exist is not an error.
func (c *Client) DeleteRole(ctx context.Context, id string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/security/roles/"+url.PathEscape(id), "", nil, nil, http.StatusNoContent)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// sameSet says whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}
