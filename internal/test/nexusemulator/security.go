package nexusemulator

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Nexus's security model as the REST API shows it: privileges (permission strings under an
// id), roles (privileges and other roles), users (roles). The emulator serves the roles and
// users resources regwire uses:
//
//   - /v1/security/roles: nexus-public components/nexus-security RoleApiResource (@since
//     3.19): GET, POST (200 with the role), GET/PUT/DELETE /{id} (PUT and DELETE 204); 404
//     "Role '%s' not found."; POST 400 "Role '%s' already exists, use a unique roleId."
//     and "Privilege '%s' contained in role '%s' not found."; PUT 409 when the body's id is
//     not the path's, 400 for a read-only role. Permissions nexus:roles:read|create|update|delete.
//   - /v1/security/users: UserApiResource (@since 3.17): GET ?userId=&source= (a search),
//     POST (200 with the user; 400 "A non-empty password is required."), PUT /{userId}
//     (204; 400 "The path's userId does not match the body"; 400 roles: "Unable to locate
//     roleId: X"; 404 "User '%s' not found."), DELETE /{userId} (204, 404). The emulator
//     checks a new user's roles as PUT does (its assumption: createUser leaves that to
//     SecuritySystem.addUser, whose answer was not traced). Permissions
//     nexus:users:read|create|update|delete. The body is ApiCreateUser: userId, firstName,
//     lastName, emailAddress, password, status and roles all required.
//
// Privileges: nx-all is nexus:*; each docker repository has
// nx-repository-view-docker-<name>-{*,browse,read,edit,add,delete}
// (RepositoryFormatSecurityContributor.add, ids by RepositoryViewPrivilegeDescriptor.id),
// which are nexus:repository-view:docker:<name>:<action> (RepositoryViewPermission), and the
// format-wide nx-repository-view-docker-*-<action>.

// role is a Nexus role of the default source.
type role struct {
	name, description string
	privileges, roles []string
	readOnly          bool
}

// builtinRoles are the roles a new Nexus has (nx-admin with nx-all; nx-anonymous).
func builtinRoles() map[string]role {
	return map[string]role{
		"nx-admin":     {name: "nx-admin", description: "Administrator Role", privileges: []string{"nx-all"}, readOnly: true},
		"nx-anonymous": {name: "nx-anonymous", description: "Anonymous Role", privileges: []string{"nx-repository-view-*-*-read", "nx-repository-view-*-*-browse"}, readOnly: true},
	}
}

const (
	prefixRoles = "/service/rest/v1/security/roles"
	pathUsers   = "/service/rest/v1/security/users"
)

// privilegePermission is the permission string behind a privilege id, or false when Nexus
// has no such privilege.
func (s *Server) privilegePermission(id string) (string, bool) {
	if id == "nx-all" {
		return "nexus:*", true
	}
	rest, ok := strings.CutPrefix(id, "nx-repository-view-")
	if !ok {
		return "", false
	}
	cut := strings.LastIndex(rest, "-")
	if cut < 0 {
		return "", false
	}
	target, action := rest[:cut], rest[cut+1:]
	if !slices.Contains([]string{"*", "browse", "read", "edit", "add", "delete"}, action) {
		return "", false
	}
	switch {
	case target == "*-*":
		return "nexus:repository-view:*:*:" + action, true
	case strings.HasPrefix(target, "docker-"):
		name := strings.TrimPrefix(target, "docker-")
		if _, exists := s.repos[strings.ToLower(name)]; name != "*" && !exists {
			return "", false
		}
		return "nexus:repository-view:docker:" + name + ":" + action, true
	}
	return "", false
}

// permissions are the permission strings user holds: those given directly and those of
// its roles, roles within roles included.
func (s *Server) permissions(name string) []string {
	u := s.users[name]
	out := slices.Clone(u.privileges)
	seen := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		r, ok := s.roles[id]
		if !ok {
			return
		}
		for _, p := range r.privileges {
			if perm, ok := s.privilegePermission(p); ok {
				out = append(out, perm)
			}
		}
		for _, sub := range r.roles {
			walk(sub)
		}
	}
	for _, id := range u.roles {
		walk(id)
	}
	return out
}

// roleXO is RoleXORequest and RoleXOResponse.
type roleXO struct {
	ID          string   `json:"id"`
	Source      string   `json:"source,omitempty"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Privileges  []string `json:"privileges"`
	Roles       []string `json:"roles"`
}

func (r role) xo(id string) roleXO {
	return roleXO{ID: id, Source: "default", Name: r.name, Description: r.description,
		Privileges: orEmpty(r.privileges), Roles: orEmpty(r.roles)}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// message answers a WebApplicationMessageException: one object whose message is quoted.
func message(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"id": "*", "message": `"` + fmt.Sprintf(format, args...) + `"`})
}

// item is the id a path under the collection at prefix names (hasID false for the
// collection itself); an empty id is answered 404.
func item(w http.ResponseWriter, r *http.Request, prefix string) (id string, hasID, ok bool) {
	id, hasID = strings.CutPrefix(strings.TrimPrefix(r.URL.Path, prefix), "/")
	if id, _ = url.PathUnescape(id); hasID && id == "" {
		http.NotFound(w, r)
		return "", false, false
	}
	return id, hasID, true
}

// authorize checks that the method is one of perms' and that the caller holds the
// permission perms gives it (@RequiresPermissions), answering 405, 401 or 403 when not.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, perms map[string]string) bool {
	return s.method(w, r, slices.Sorted(maps.Keys(perms))...) && s.allowed(w, r, perms[r.Method])
}

// serveRoles serves /v1/security/roles[/{id}]. The lock is held.
func (s *Server) serveRoles(w http.ResponseWriter, r *http.Request) {
	id, hasID, ok := item(w, r, prefixRoles)
	if !ok {
		return
	}
	if !hasID {
		if !s.authorize(w, r, map[string]string{http.MethodGet: "nexus:roles:read", http.MethodPost: "nexus:roles:create"}) {
			return
		}
		if r.Method == http.MethodGet {
			ids := make([]string, 0, len(s.roles))
			for id := range s.roles {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			out := make([]roleXO, 0, len(ids))
			for _, id := range ids {
				out = append(out, s.roles[id].xo(id))
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		var in roleXO
		if _, ok := decode(w, r, &in); !ok || !s.validRole(w, &in) {
			return
		}
		if _, exists := s.roles[in.ID]; exists {
			message(w, http.StatusBadRequest, "Role '%s' already exists, use a unique roleId.", in.ID)
			return
		}
		if !s.containedExist(w, &in, in.ID) {
			return
		}
		s.roles[in.ID] = role{name: in.Name, description: in.Description, privileges: in.Privileges, roles: in.Roles}
		writeJSON(w, http.StatusOK, s.roles[in.ID].xo(in.ID))
		return
	}
	if !s.authorize(w, r, map[string]string{http.MethodGet: "nexus:roles:read", http.MethodPut: "nexus:roles:update", http.MethodDelete: "nexus:roles:delete"}) {
		return
	}
	have, exists := s.roles[id]
	switch r.Method {
	case http.MethodGet:
		if !exists {
			message(w, http.StatusNotFound, "Role '%s' not found.", id)
			return
		}
		writeJSON(w, http.StatusOK, have.xo(id))
	case http.MethodPut:
		var in roleXO
		if _, ok := decode(w, r, &in); !ok || !s.validRole(w, &in) {
			return
		}
		switch {
		case in.ID != id:
			message(w, http.StatusConflict, "The Role id '%s' does not match the id used in the path '%s'.", in.ID, id)
		case !exists:
			message(w, http.StatusNotFound, "Role '%s' not found.", id)
		case have.readOnly:
			message(w, http.StatusBadRequest, "Role '%s' is internal and cannot be modified or deleted.", id)
		case s.containedExist(w, &in, id):
			s.roles[id] = role{name: in.Name, description: in.Description, privileges: in.Privileges, roles: in.Roles}
			w.WriteHeader(http.StatusNoContent)
		}
	case http.MethodDelete:
		switch {
		case !exists:
			message(w, http.StatusNotFound, "Role '%s' not found.", id)
		case have.readOnly:
			message(w, http.StatusBadRequest, "Role '%s' is internal and cannot be modified or deleted.", id)
		default:
			delete(s.roles, id)
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// validRole is RoleXORequest's bean validation: id and name @NotEmpty.
func (s *Server) validRole(w http.ResponseWriter, in *roleXO) bool {
	switch {
	case in.ID == "":
		validation(w, "id", "must not be empty")
	case in.Name == "":
		validation(w, "name", "must not be empty")
	default:
		return true
	}
	return false
}

// containedExist answers 400 when the role names a privilege or role Nexus does not have.
func (s *Server) containedExist(w http.ResponseWriter, in *roleXO, id string) bool {
	for _, p := range in.Privileges {
		if _, ok := s.privilegePermission(p); !ok {
			message(w, http.StatusBadRequest, "Privilege '%s' contained in role '%s' not found.", p, id)
			return false
		}
	}
	for _, sub := range in.Roles {
		if _, ok := s.roles[sub]; !ok {
			message(w, http.StatusBadRequest, "Role '%s' contained in role '%s' not found.", sub, id)
			return false
		}
	}
	return true
}

// userXO is ApiUser, and ApiCreateUser with its password.
type userXO struct {
	UserID        string   `json:"userId"`
	FirstName     string   `json:"firstName"`
	LastName      string   `json:"lastName"`
	EmailAddress  string   `json:"emailAddress"`
	Password      string   `json:"password,omitempty"`
	Source        string   `json:"source,omitempty"`
	Status        string   `json:"status"`
	ReadOnly      bool     `json:"readOnly"`
	Roles         []string `json:"roles"`
	ExternalRoles []string `json:"externalRoles"`
}

func (u user) xo(id string) userXO {
	return userXO{UserID: id, FirstName: u.firstName, LastName: u.lastName, EmailAddress: u.email,
		Source: "default", Status: u.status, Roles: orEmpty(u.roles), ExternalRoles: []string{}}
}

// userStatuses are ApiUserStatus's JSON values.
var userStatuses = []string{"active", "locked", "disabled", "changepassword"}

// serveUsers serves /v1/security/users and /v1/security/users/{userId} (change-password
// is served apart). The lock is held.
func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	id, hasID, ok := item(w, r, pathUsers)
	if !ok {
		return
	}
	if !hasID {
		if !s.authorize(w, r, map[string]string{http.MethodGet: "nexus:users:read", http.MethodPost: "nexus:users:create"}) {
			return
		}
		if r.Method == http.MethodGet {
			// UserSearchCriteria: the userId parameter is a search term, not an exact name;
			// the default source answers every user whose id starts with it.
			term := strings.ToLower(r.URL.Query().Get("userId"))
			ids := make([]string, 0, len(s.users))
			for id := range s.users {
				if strings.HasPrefix(strings.ToLower(id), term) {
					ids = append(ids, id)
				}
			}
			sort.Strings(ids)
			out := make([]userXO, 0, len(ids))
			for _, id := range ids {
				out = append(out, s.users[id].xo(id))
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		var in userXO
		if _, ok := decode(w, r, &in); !ok || !s.validUser(w, &in, true) {
			return
		}
		if _, exists := s.users[in.UserID]; exists {
			// The emulator's own answer: nexus-public's SecuritySystem.addUser path to a
			// duplicate was not found; regwire reads before it creates.
			validation(w, "userId", fmt.Sprintf("User '%s' already exists.", in.UserID))
			return
		}
		u := user{password: in.Password}
		u.set(&in)
		s.users[in.UserID] = u
		writeJSON(w, http.StatusOK, u.xo(in.UserID))
		return
	}
	if !s.authorize(w, r, map[string]string{http.MethodPut: "nexus:users:update", http.MethodDelete: "nexus:users:delete"}) {
		return
	}
	have, exists := s.users[id]
	if r.Method == http.MethodDelete {
		if !exists {
			message(w, http.StatusNotFound, "User '%s' not found.", id)
			return
		}
		delete(s.users, id)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var in userXO
	if _, ok := decode(w, r, &in); !ok {
		return
	}
	if in.UserID != id {
		message(w, http.StatusBadRequest, "The path's userId does not match the body")
		return
	}
	if !s.validUser(w, &in, false) {
		return
	}
	if !exists {
		message(w, http.StatusNotFound, "User '%s' not found.", id)
		return
	}
	have.set(&in)
	s.users[id] = have
	w.WriteHeader(http.StatusNoContent)
}

// set takes what a create or update body says of a user (not its password).
func (u *user) set(in *userXO) {
	u.firstName, u.lastName, u.email, u.status, u.roles = in.FirstName, in.LastName, in.EmailAddress, in.Status, in.Roles
}

// validUser is ApiCreateUser's (create) or ApiUser's (update) bean validation, then
// UserApiResource's own checks: a non-blank password, roles that exist.
func (s *Server) validUser(w http.ResponseWriter, in *userXO, create bool) bool {
	switch {
	case strings.TrimSpace(in.UserID) == "":
		validation(w, "userId", "must not be blank")
	case in.FirstName == "" || in.LastName == "":
		validation(w, "firstName", "firstName and lastName must not be empty")
	case !strings.Contains(in.EmailAddress, "@"):
		validation(w, "emailAddress", "not a well-formed email address")
	case !slices.Contains(userStatuses, in.Status):
		validation(w, "status", "must not be null")
	case create && len(in.Roles) == 0:
		validation(w, "roles", "must not be empty")
	case create && strings.TrimSpace(in.Password) == "":
		message(w, http.StatusBadRequest, "A non-empty password is required.")
	default:
		for _, id := range in.Roles {
			if _, ok := s.roles[id]; !ok {
				validation(w, "roles", "Unable to locate roleId: "+id)
				return false
			}
		}
		return true
	}
	return false
}

// Role returns a role's privileges and roles, or false when Nexus has no such role.
func (s *Server) Role(id string) (privileges, roles []string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.roles[id]
	return slices.Clone(r.privileges), slices.Clone(r.roles), ok
}

// UserRoles returns a user's roles and status, or false when Nexus has no such user.
func (s *Server) UserRoles(id string) (roles []string, status string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	return slices.Clone(u.roles), u.status, ok
}

// May says whether user holds the permission perm (e.g.
// nexus:repository-view:docker:my-docker:add), through its privileges and roles.
func (s *Server) May(name, perm string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.permitted(name, perm)
}
