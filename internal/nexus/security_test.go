package nexus_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/nexus"
)

func pullRole() *nexus.Role {
	return &nexus.Role{ID: "regwire-pull", Name: "regwire-pull", Description: "pulls from my-docker",
		Privileges: []string{nexus.DockerViewPrivilege("my-docker", nexus.ActionRead), nexus.DockerViewPrivilege("my-docker", nexus.ActionBrowse)}}
}

func pullUser() nexus.User {
	return nexus.User{UserID: "regwire-pull", FirstName: "regwire", LastName: "pull", EmailAddress: "regwire-pull@regwire.invalid",
		Status: nexus.UserStatusActive, Roles: []string{"regwire-pull"}}
}

// TestARoleAndAUserFollowWhatIsAskedAndHoldOnlyTheirPrivileges drives the roles and users
// resources: create, nothing sent again when nothing changed, an update, and a user that
// may read the repository and not write it.
func TestARoleAndAUserFollowWhatIsAskedAndHoldOnlyTheirPrivileges(t *testing.T) {
	t.Parallel()
	f, admin, ctx := withMyDocker(t)
	for _, want := range []nexus.Action{nexus.Created, nexus.Unchanged} {
		if got, err := admin.EnsureRole(ctx, pullRole()); err != nil || got != want {
			t.Fatalf("EnsureRole: %v, %v; want %v", got, err, want)
		}
	}
	// A user whose id starts like ours is not ours: the search is a prefix search.
	f.AddUser("regwire-pull-other", "x")
	for _, want := range []nexus.Action{nexus.Created, nexus.Unchanged} {
		if got, err := admin.EnsureUser(ctx, pullUser(), "first-password"); err != nil || got != want {
			t.Fatalf("EnsureUser: %v, %v; want %v", got, err, want)
		}
	}
	if f.Password("regwire-pull") != "first-password" {
		t.Errorf("password %q", f.Password("regwire-pull"))
	}
	if !f.May("regwire-pull", "nexus:repository-view:docker:my-docker:read") || f.May("regwire-pull", "nexus:repository-view:docker:my-docker:add") {
		t.Error("the pull user must read my-docker and nothing more")
	}

	// Push: a wider role; the user follows and gets the password again.
	push := pullRole()
	push.Privileges = append(push.Privileges, nexus.DockerViewPrivilege("my-docker", nexus.ActionAdd), nexus.DockerViewPrivilege("my-docker", nexus.ActionEdit))
	if got, err := admin.EnsureRole(ctx, push); err != nil || got != nexus.Updated {
		t.Fatalf("EnsureRole wider: %v, %v", got, err)
	}
	u := pullUser()
	u.LastName = "push"
	if got, err := admin.EnsureUser(ctx, u, "second-password"); err != nil || got != nexus.Updated {
		t.Fatalf("EnsureUser changed: %v, %v", got, err)
	}
	if f.Password("regwire-pull") != "second-password" || !f.May("regwire-pull", "nexus:repository-view:docker:my-docker:add") {
		t.Error("the user did not follow its role and password")
	}

	for _, del := range []func() error{
		func() error { return admin.DeleteUser(ctx, "regwire-pull") },
		func() error { return admin.DeleteUser(ctx, "regwire-pull") }, // gone already: not an error
		func() error { return admin.DeleteRole(ctx, "regwire-pull") },
		func() error { return admin.DeleteRole(ctx, "regwire-pull") },
	} {
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok := f.UserRoles("regwire-pull"); ok {
		t.Error("user still there")
	}
}

// TestRoleAndUserErrorsCarryNexusText: Nexus refuses a role naming a privilege it does not
// have, a user with a role it does not have, and a caller without the privilege.
func TestRoleAndUserErrorsCarryNexusText(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	ctx := context.Background()
	admin := client(t, url, "admin", "initial-admin-password")
	var e *nexus.Error
	// No repository yet, so no privileges for it.
	_, err := admin.EnsureRole(ctx, pullRole())
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest ||
		e.Message != "Privilege 'nx-repository-view-docker-my-docker-read' contained in role 'regwire-pull' not found." {
		t.Errorf("role with an unknown privilege: %v", err)
	}
	_, err = admin.EnsureUser(ctx, pullUser(), "pw")
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest || !strings.Contains(e.Message, "Unable to locate roleId: regwire-pull") {
		t.Errorf("user with an unknown role: %v", err)
	}
	f.AddUser("dev", "dev-password", "nexus:repository-view:docker:*:*")
	_, err = client(t, url, "dev", "dev-password").EnsureRole(ctx, pullRole())
	if !nexus.IsUnauthorized(err) {
		t.Errorf("a user without nexus:roles:read: %v", err)
	}
}
