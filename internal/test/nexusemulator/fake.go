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
	"regexp"
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
	version    string
	users      map[string]user
	roles      map[string]role // security.go
	realms     []string
	repos      map[string]json.RawMessage // docker hosted repositories as Nexus answers them
	stores     map[string]*dockerStore    // their content, by lower-case name
	tokens     map[string]string          // DockerToken realm tokens: token → user
	writers    map[string][]string        // users who wrote to each repository (Writers)
	blobStores []string
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
		users:      map[string]user{"admin": {password: initialPassword, roles: []string{"nx-admin"}, status: "active", firstName: "Administrator", lastName: "User", email: "admin@example.org"}},
		roles:      builtinRoles(),
		realms:     []string{"NexusAuthenticatingRealm"},
		repos:      map[string]json.RawMessage{},
		stores:     map[string]*dockerStore{},
		tokens:     map[string]string{},
		writers:    map[string][]string{},
		blobStores: []string{"default"},
		writable:   true,
		version:    DefaultVersion,
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
	pathHosted     = "/service/rest/v1/repositories/docker/hosted"
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
	case p == pathUsers || strings.HasPrefix(p, prefixUsers):
		s.serveUsers(w, r)
	case p == prefixRoles || strings.HasPrefix(p, prefixRoles+"/"):
		s.serveRoles(w, r)
	case p == pathHosted:
		if _, ok := s.authenticated(w, r); !ok || !s.method(w, r, http.MethodPost) {
			return
		}
		var repo dockerHosted
		body, ok := decode(w, r, &repo)
		if !ok || !s.valid(w, &repo) {
			return
		}
		// AuthorizingRepositoryManager.create: ensureUserCanAdmin(ADD, format, name), i.e.
		// nexus:repository-admin:docker:<name>:add.
		if !s.allowed(w, r, "nexus:repository-admin:docker:"+*repo.Name+":add") {
			return
		}
		if _, exists := s.repos[strings.ToLower(*repo.Name)]; exists {
			// The @Unique…Name validators' message (nexus-public coreui UniqueBlobStoreName
			// has the same default).
			validation(w, "name", "Name is already used, must be unique (ignoring case)")
			return
		}
		s.repos[strings.ToLower(*repo.Name)] = s.answer(body, r.Host)
		w.WriteHeader(http.StatusCreated)
	case strings.HasPrefix(p, pathHosted+"/"):
		name := strings.TrimPrefix(p, pathHosted+"/")
		// Reading needs the repository's admin read privilege, an update its edit one.
		action := "read"
		if r.Method == http.MethodPut {
			action = "edit"
		}
		if !s.allowed(w, r, "nexus:repository-admin:docker:"+name+":"+action) || !s.method(w, r, http.MethodGet, http.MethodPut) {
			return
		}
		raw, exists := s.repos[strings.ToLower(name)]
		if !exists {
			// A WebApplicationMessageException: one ValidationErrorXO whose message is
			// itself quoted (nexus-public components/nexus-rest WebApplicationMessageException).
			writeJSON(w, http.StatusNotFound, map[string]string{"id": "*", "message": `"Repository not found"`})
			return
		}
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(raw)
			return
		}
		var repo dockerHosted
		body, ok := decode(w, r, &repo)
		if !ok || !s.valid(w, &repo) {
			return
		}
		if *repo.Name != name {
			validation(w, "name", "Renaming a repository is not supported")
			return
		}
		s.repos[strings.ToLower(name)] = s.answer(body, r.Host)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// dockerHosted is the request body Sonatype documents for docker hosted repositories.
type dockerHosted struct {
	Name    *string `json:"name"`
	Online  *bool   `json:"online"`
	Storage *struct {
		BlobStoreName               string `json:"blobStoreName"`
		StrictContentTypeValidation *bool  `json:"strictContentTypeValidation"`
		WritePolicy                 string `json:"writePolicy"`
	} `json:"storage"`
	Cleanup *struct {
		PolicyNames []string `json:"policyNames"`
	} `json:"cleanup,omitempty"`
	Component *struct {
		ProprietaryComponents bool `json:"proprietaryComponents"`
	} `json:"component,omitempty"`
	Docker *struct {
		V1Enabled      *bool   `json:"v1Enabled"`
		ForceBasicAuth *bool   `json:"forceBasicAuth"`
		HTTPPort       *int    `json:"httpPort,omitempty"`
		HTTPSPort      *int    `json:"httpsPort,omitempty"`
		Subdomain      *string `json:"subdomain,omitempty"`
		PathEnabled    *bool   `json:"pathEnabled,omitempty"`
	} `json:"docker"`
}

// repoName is Nexus's rule for repository names: a letter, digit or hyphen first, then
// letters, digits, underscores, hyphens and dots (nexus-public RepositoryXO's @Pattern,
// whose message valid answers).
var repoName = regexp.MustCompile(`^[a-zA-Z0-9\-][a-zA-Z0-9_\-.]*$`)

// valid checks what Nexus checks, answering its 400 when something is wrong.
func (s *Server) valid(w http.ResponseWriter, r *dockerHosted) bool {
	switch {
	case r.Name == nil || *r.Name == "":
		// Bean validation's default messages (@NotEmpty, @NotNull) from here on.
		validation(w, "name", "must not be empty")
	case !repoName.MatchString(*r.Name):
		validation(w, "name", "Only letters, digits, underscores(_), hyphens(-), and dots(.) are allowed and may not start with underscore or dot.")
	case s.keepsPathEnabled() && strings.ToLower(*r.Name) != *r.Name:
		// Versions with path-based routing refuse upper case in docker repository names
		// (facts.md "Nexus as it really behaves"; the docker format is not in nexus-public).
		validation(w, "name", "Docker repository names must be lowercase to support path-based routing")
	case r.Online == nil:
		validation(w, "online", "must not be null")
	case r.Storage == nil || r.Storage.StrictContentTypeValidation == nil:
		validation(w, "storage", "must not be null")
	case !slices.Contains(s.blobStores, r.Storage.BlobStoreName):
		// A 400 list naming the field; the wording is the fake's own (no source for
		// Nexus's text was found in nexus-public).
		validation(w, "storage.blobStoreName", fmt.Sprintf("Blob store '%s' does not exist", r.Storage.BlobStoreName))
	case !slices.Contains([]string{"ALLOW", "ALLOW_ONCE", "DENY"}, strings.ToUpper(r.Storage.WritePolicy)):
		// The fake's own wording, as for the two below: no test asserts them.
		validation(w, "storage.writePolicy", "must be one of ALLOW, ALLOW_ONCE, DENY")
	case r.Docker == nil || r.Docker.V1Enabled == nil || r.Docker.ForceBasicAuth == nil:
		validation(w, "docker", "v1Enabled and forceBasicAuth must not be null")
	default:
		return true
	}
	return false
}

// answer is what a GET returns for a stored repository: what the request set, less what
// this version does not know, plus the fields Nexus adds (its URL on host).
func (s *Server) answer(body map[string]any, host string) json.RawMessage {
	if st, ok := body["storage"].(map[string]any); ok {
		if wp, ok := st["writePolicy"].(string); ok {
			st["writePolicy"] = strings.ToUpper(wp)
		}
	}
	if d, ok := body["docker"].(map[string]any); ok && !s.keepsPathEnabled() {
		delete(d, "pathEnabled")
	}
	body["format"], body["type"] = "docker", "hosted"
	body["url"] = "http://" + host + "/repository/" + body["name"].(string)
	out, _ := json.Marshal(body)
	return out
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
