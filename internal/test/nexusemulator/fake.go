// Package nexusemulator is a contract fake of the parts of Sonatype Nexus Repository 3's REST
// API that regwire uses. Nexus cannot run here (it needs a JVM and a Docker image); this
// fake stands in for it in tests and checks every request against Sonatype's published
// contract: the method, the path, basic authentication and the privileges, the content
// type, and the body (names, write policies, blob stores and realm ids are refused with a
// 400). Like Nexus it ignores JSON fields it does not know, answers with a Server header
// naming its version, and, set to a version before 3.83.0, drops docker.pathEnabled without
// an error. It also serves the Docker registry API of the repositories it holds, in both of
// Nexus's URL shapes (docker.go).
package nexusemulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
)

// KnownRealms are the realm ids a stock Nexus 3 (OSS/Community) offers. The Pro-only
// realms (SAML, Crowd, User Token) are not among them: OSS refuses them like any unknown id.
var KnownRealms = []string{
	"NexusAuthenticatingRealm", "DockerToken", "NpmToken", "NuGetApiKey", "rutauth-realm",
	"LdapRealm", "ConanToken", "DefaultRole",
}

// Server is the fake's state. Use New, then serve it with net/http/httptest.
type Server struct {
	mu sync.Mutex
	// version is what the Server header reports, and decides which fields are kept.
	version string
	users   map[string]user
	roles   map[string]role // security.go
	realms  []string
	repos   map[string]json.RawMessage // docker hosted repositories as Nexus answers them
	stores  map[string]*dockerStore    // their content, by lower-case name
	// upstreamAuth are the proxy repositories' upstream credentials (user, password), which
	// no GET shows.
	upstreamAuth map[string][2]string
	anonymous    anonymousSettings   // anonymous.go
	tokens       map[string]string   // DockerToken realm tokens: token → user
	writers      map[string][]string // users who wrote to each repository (Writers)
	blobStores   []string
	// passwordFile is <work dir>/admin.password while it exists ("" when not kept).
	passwordFile string
	// Writable is what GET /status/writable answers.
	writable bool
	// Requests lists "METHOD path" of every request, in order.
	requests []string
}

type user struct {
	password string
	// privileges are Nexus permission strings given straight to the user (AddUser), e.g.
	// nexus:* or nexus:repository-admin:docker:my-docker:add,edit,read.
	privileges []string
	// roles are role ids (security.go); a user made through the REST API holds only these.
	roles []string
	// status is ApiUserStatus: only an active user may log in.
	status                     string
	firstName, lastName, email string
}

// New returns a Nexus as it is after its first start: user admin with initialPassword,
// the local realm active, the default blob store, no repositories.
func New(initialPassword string) *Server {
	return &Server{
		users: map[string]user{
			"admin": {password: initialPassword, roles: []string{"nx-admin"}, status: "active", firstName: "Administrator", lastName: "User", email: "admin@example.org"},
			// The user anonymous requests run as (anonymous.go); no one knows its password.
			"anonymous": {password: randomHex(16), roles: []string{"nx-anonymous"}, status: "active", firstName: "Anonymous", lastName: "User", email: "anonymous@example.org"},
		},
		roles:        builtinRoles(),
		realms:       []string{"NexusAuthenticatingRealm"},
		repos:        map[string]json.RawMessage{},
		stores:       map[string]*dockerStore{},
		upstreamAuth: map[string][2]string{},
		anonymous:    anonymousSettings{userID: "anonymous", realmName: "NexusAuthorizingRealm"},
		tokens:       map[string]string{},
		writers:      map[string][]string{},
		blobStores:   []string{"default"},
		writable:     true,
		version:      DefaultVersion,
	}
}

// DefaultVersion is the Nexus version a new fake reports: one with path-based routing.
const DefaultVersion = "3.84.0"

// SetVersion makes the fake behave as Nexus v (e.g. "3.80.0").
func (s *Server) SetVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = v
}

// keepsPathEnabled says whether this version knows docker.pathEnabled: Sonatype's generated
// OpenAPI lacks it at 3.82.1 and has it from 3.84.0 (3.83.0 introduced it); older versions
// drop the unknown field silently.
func (s *Server) keepsPathEnabled() bool { return s.atLeast("3.83.0") }

// atLeast says whether the version the fake behaves as is v or later.
func (s *Server) atLeast(v string) bool {
	have, err := semver.NewVersion(s.version)
	return err == nil && !have.LessThan(semver.MustParse(v))
}

// AddUser adds a user with the privileges given (Nexus permission strings such as
// nexus:repository-admin:docker:*:add,edit,read or nexus:settings:update); none means a
// user who may log in and nothing more.
func (s *Server) AddUser(name, password string, privileges ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = user{password: password, privileges: privileges, status: "active", firstName: name, lastName: name, email: name + "@example.org"}
}

// permitted says whether name holds perm, with Apache Shiro's wildcard permissions (which
// Nexus uses): parts separated by ':', each a comma list or '*', a shorter privilege
// implying every further part.
func (s *Server) permitted(name, perm string) bool {
	want := strings.Split(perm, ":")
	for _, held := range s.permissions(name) {
		parts := strings.Split(held, ":")
		ok := true
		for i, p := range parts {
			if i >= len(want) {
				ok = ok && p == "*"
				continue
			}
			if p != "*" && !slices.Contains(strings.Split(p, ","), want[i]) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// WriteAdminPasswordFile keeps admin's initial password in <workDir>/admin.password,
// readable by its owner only, as Nexus does on its first start (nexus-public
// AdminPasswordFileManagerImpl.writeFile), and deletes the file once admin's password
// changes, as Nexus does: the initial password is gone for good then.
func (s *Server) WriteAdminPasswordFile(workDir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(workDir, "admin.password")
	if err := os.WriteFile(path, []byte(s.users["admin"].password), 0o600); err != nil {
		return err
	}
	s.passwordFile = path
	return nil
}

// SetWritable sets what the writable status endpoint answers.
func (s *Server) SetWritable(w bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writable = w
}

// Password returns user's current password.
func (s *Server) Password(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[name].password
}

// Realms returns the active realms.
func (s *Server) Realms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.realms)
}

// Repository returns a docker hosted repository as Nexus would answer it, or nil.
func (s *Server) Repository(name string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, ok := s.repos[name]
	if !ok {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

// Requests returns "METHOD path" of the requests served so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

const (
	pathWritable   = "/service/rest/v1/status/writable"
	pathStatus     = "/service/rest/v1/status"
	pathRealms     = "/service/rest/v1/security/realms/active"
	prefixUsers    = "/service/rest/v1/security/users/"
	suffixPassword = "/change-password"
)

// ServeHTTP implements the contract: the Docker registry API (docker.go) and the REST API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt, ok := dockerRoute(r.URL.Path); ok {
		s.serveDocker(w, r, rt)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	w.Header().Set("Server", s.serverHeader())
	p := r.URL.Path
	switch {
	case p == pathStatus || p == pathWritable:
		if !s.method(w, r, http.MethodGet) {
			return
		}
		if p == pathWritable && !s.writable {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	case p == pathRealms:
		// RealmApiResource: nexus:settings:read to read, nexus:settings:update to set.
		perm := "nexus:settings:read"
		if r.Method == http.MethodPut {
			perm = "nexus:settings:update"
		}
		if !s.allowed(w, r, perm) || !s.method(w, r, http.MethodGet, http.MethodPut) {
			return
		}
		if r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, s.realms)
			return
		}
		var realms []string
		if _, ok := decode(w, r, &realms); !ok {
			return
		}
		var unknown []string
		for _, id := range realms {
			if !slices.Contains(KnownRealms, id) {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) > 0 {
			// RealmApiResource: 400, text/plain, the unknown ids as a list.
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, "Unknown realmIds: [%s]", strings.Join(unknown, ", "))
			return
		}
		s.realms = realms
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(p, prefixUsers) && strings.HasSuffix(p, suffixPassword):
		name := strings.TrimSuffix(strings.TrimPrefix(p, prefixUsers), suffixPassword)
		caller, ok := s.authenticated(w, r)
		if !ok || !s.method(w, r, http.MethodPut) {
			return
		}
		// Changing a password needs the nexus:* privilege, one's own included.
		if !s.permitted(caller, "nexus:*") {
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			http.Error(w, "Unsupported Media Type: the new password is sent as text/plain", http.StatusUnsupportedMediaType)
			return
		}
		u, exists := s.users[name]
		if !exists {
			http.Error(w, fmt.Sprintf("User '%s' not found.", name), http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if strings.TrimSpace(string(b)) == "" {
			validation(w, "PARAMETER password", "Password must be supplied.")
			return
		}
		u.password = string(b)
		s.users[name] = u
		if name == "admin" && s.passwordFile != "" {
			_ = os.Remove(s.passwordFile)
			s.passwordFile = ""
		}
		w.WriteHeader(http.StatusNoContent)
	case p == pathAnonymous:
		s.serveAnonymous(w, r)
	case p == pathUsers || strings.HasPrefix(p, prefixUsers):
		s.serveUsers(w, r)
	case p == prefixRoles || strings.HasPrefix(p, prefixRoles+"/"):
		s.serveRoles(w, r)
	case strings.HasPrefix(p, prefixDockerRepos):
		s.serveRepositories(w, r, strings.TrimPrefix(p, prefixDockerRepos))
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) method(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	if slices.Contains(allowed, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

func (s *Server) authenticated(w http.ResponseWriter, r *http.Request) (string, bool) {
	name, pass, ok := r.BasicAuth()
	if u, known := s.users[name]; !ok || !known || u.password != pass || u.status != "active" {
		w.Header().Set("WWW-Authenticate", basicChallenge)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return "", false
	}
	return name, true
}

// allowed authenticates the request and checks that its user holds perm, answering 401
// or 403 when not.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, perm string) bool {
	name, ok := s.authenticated(w, r)
	if !ok {
		return false
	}
	if !s.permitted(name, perm) {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return false
	}
	return true
}

// decode reads a JSON body into v, and returns it as an object too. Like Nexus it ignores
// fields it does not know (nexus-public nexus-rest-jackson2 ObjectMapperProvider:
// FAIL_ON_UNKNOWN_PROPERTIES off); the content type must say JSON.
func decode(w http.ResponseWriter, r *http.Request, v any) (map[string]any, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "Unsupported Media Type", http.StatusUnsupportedMediaType)
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		// Malformed JSON: one object (JsonProcessingExceptionMapper).
		writeJSON(w, http.StatusBadRequest, map[string]string{"id": "*", "message": "Unable to read the request body: " + err.Error()})
		return nil, false
	}
	var body map[string]any
	_ = json.Unmarshal(b, &body) // nil for a JSON list (realms)
	return body, true
}

func validation(w http.ResponseWriter, id, msg string) {
	writeJSON(w, http.StatusBadRequest, []map[string]string{{"id": id, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
