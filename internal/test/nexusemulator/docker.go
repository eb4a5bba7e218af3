package nexusemulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // the blob store of each repository
	"github.com/sirupsen/logrus"
)

// quietRegistry silences the registry library, which logs every request through logrus's
// standard logger; the fake's own record of requests is Requests.
var quietRegistry sync.Once

// The Docker data path. Each docker hosted repository is served by its own CNCF
// distribution registry (the library, in memory), so content is stored per Nexus
// repository as Nexus stores it. In front of it the fake does what Nexus does and
// distribution does not: it maps Nexus's two URL shapes onto the repository, challenges
// and authenticates the way Nexus does, applies the repository's write policy, and
// leaves out what Nexus lacks (cross-repository mounts, the referrers API).
//
// The URL shapes (facts.md, "Nexus as it really behaves"; Sonatype's docs on path-based
// routing):
//   - path-based routing, Nexus 3.83.0 and later, for repositories with docker.pathEnabled:
//     /v2/<repository>/<image>/... on Nexus's own port, the image name carrying the
//     repository's name (nexus.local/my-docker/busybox);
//   - the repository base path /repository/<repository>/v2/<image>/..., the image name
//     without it.

// dockerStore is one repository's registry.
type dockerStore struct {
	app http.Handler
}

// route is what a data-path request addresses.
type route struct {
	// repo is the Nexus repository ("" for the version check and token at the root).
	repo string
	// prefix is the part of the path that names the repository: /v2/<repo> or
	// /repository/<repo>/v2; rest follows it (/<image>/manifests/<ref>, /token, "").
	prefix, rest string
	// base is the prefix of the token endpoint: "" (path-based routing) or
	// /repository/<repo>.
	base string
}

// dockerRoute maps a path onto a repository, or says it is no data-path request.
func dockerRoute(p string) (route, bool) {
	if rest, ok := strings.CutPrefix(p, "/repository/"); ok {
		repo, after, _ := strings.Cut(rest, "/")
		if after != "v2" && !strings.HasPrefix(after, "v2/") {
			return route{}, false
		}
		return route{repo: repo, prefix: "/repository/" + repo + "/v2", rest: strings.TrimPrefix(after, "v2"), base: "/repository/" + repo}, true
	}
	if p != "/v2" && !strings.HasPrefix(p, "/v2/") {
		return route{}, false
	}
	rest := strings.TrimPrefix(p, "/v2")
	if rest == "" || rest == "/" || rest == "/token" {
		return route{rest: rest}, true
	}
	repo, after, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	return route{repo: repo, prefix: "/v2/" + repo, rest: "/" + after}, true
}

// unauthorizedBody is the docker error Nexus answers a request without valid credentials with.
const unauthorizedBody = `{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested resource is not authorized","detail":null}]}` + "\n"

// basicChallenge is Nexus's Basic challenge, on docker endpoints with forceBasicAuth
// (nexus-public#921) and on the REST API.
const basicChallenge = `BASIC realm="Sonatype Nexus Repository Manager"`

// serveDocker serves the Docker registry API of the repositories. The lock is held only to
// read the configuration: content streams without it.
func (s *Server) serveDocker(w http.ResponseWriter, r *http.Request, rt route) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	w.Header().Set("Server", s.serverHeader())
	var cfg repoConfig
	known := true
	if rt.repo != "" {
		cfg, known = s.repoConfig(rt.repo)
		// Path-based routing reaches a repository only where it is on (and exists: 3.83.0).
		if known && rt.base == "" && (!s.keepsPathEnabled() || !cfg.pathEnabled) {
			known = false
		}
	}
	user, authenticated := s.dockerUser(r)
	anonymous := false
	if !authenticated && rt.repo != "" && r.Header.Get("Authorization") == "" && s.anonymous.enabled {
		// With anonymous access on, a request without credentials runs as the anonymous
		// user, whatever the repository's forceBasicAuth says: containerd pulled from a
		// group without credentials (nexus-public#217), podman from a repository whose
		// "Allow anonymous docker pull" was off (#328). Only the /v2/ check challenges.
		user, authenticated, anonymous = s.anonymous.userID, true, true
	}
	if _, _, basic := r.BasicAuth(); authenticated && !basic && user == s.anonymous.userID {
		anonymous = true // a token the token endpoint gave without credentials
	}
	realmActive := slices.Contains(s.realms, "DockerToken")
	// Nexus 3.78 to 3.80 double a forwarded port in the realm (realmURL).
	doublesPort := s.atLeast("3.78.0") && !s.atLeast("3.81.0")
	s.mu.Unlock()

	if !known {
		dockerError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	if rt.rest == "/token" {
		s.token(w, r, realmActive)
		return
	}
	if !authenticated {
		s.challenge(w, r, rt, cfg, realmActive, doublesPort)
		return
	}
	if rt.repo != "" && !s.mayUse(user, r.Method, rt.repo) {
		if anonymous {
			// The anonymous user may not: asked to authenticate, as a request without
			// credentials is where anonymous access is off (the emulator's reading of an
			// AuthorizationException for an anonymous subject).
			s.challenge(w, r, rt, cfg, realmActive, doublesPort)
			return
		}
		dockerError(w, http.StatusForbidden, "DENIED", "access to the requested resource is not authorized")
		return
	}
	if rt.repo == "" {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return
	}
	// Nexus has no referrers API (facts.md: none documented): clients fall back to the
	// sha256-<hex> tag schema.
	if parts := strings.Split(rt.rest, "/"); len(parts) >= 3 && parts[len(parts)-2] == "referrers" {
		dockerError(w, http.StatusNotFound, "NOT_FOUND", "Not Found")
		return
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	switch {
	case write && cfg.kind == typeGroup:
		// Deploying through a group is Pro-only; Community's GroupHandler answers
		// methodNotAllowed(method, GET, HEAD) (nexus-public GroupHandler).
		w.Header().Set("Allow", "GET, HEAD")
		dockerError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
		return
	case write && cfg.kind == typeProxy:
		// A proxy repository holds what it fetched; nothing is pushed to it (the
		// emulator's own answer: 405 as for a group).
		w.Header().Set("Allow", "GET, HEAD")
		dockerError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
		return
	}
	if deny, msg := s.refuseWrite(r, rt, cfg); deny {
		dockerError(w, http.StatusBadRequest, "DENIED", msg)
		return
	}
	if write {
		s.mu.Lock()
		if !slices.Contains(s.writers[rt.repo], user) {
			s.writers[rt.repo] = append(s.writers[rt.repo], user)
		}
		s.mu.Unlock()
	}
	s.forward(w, r, rt)
}

// forward hands the request to the repository's registry, as /v2/<rest>, and maps the
// locations it answers back onto the shape the client used. A group asks its members in
// order and answers with the first that has what is asked (nexus-public
// GroupHandler.getFirst), each member once however groups nest; its own privileges are
// the only ones checked (SecurityHandler: "one security check per request").
func (s *Server) forward(w http.ResponseWriter, r *http.Request, rt route) {
	s.forwardTo(w, r, rt, rt.repo, map[string]bool{})
}

func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, rt route, repo string, dispatched map[string]bool) {
	s.mu.Lock()
	cfg, _ := s.repoConfig(repo)
	s.mu.Unlock()
	if cfg.kind == typeGroup {
		dispatched[strings.ToLower(repo)] = true
		for _, m := range cfg.members {
			if dispatched[strings.ToLower(m)] {
				continue
			}
			try := &firstFound{ResponseWriter: w}
			s.forwardTo(try, r, rt, m, dispatched)
			if try.found {
				return
			}
		}
		dockerError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	store := s.store(repo)
	in := r.Clone(r.Context())
	in.URL.Path, in.URL.RawPath = "/v2"+rt.rest, ""
	if strings.HasSuffix(in.URL.Path, "/blobs/uploads/") && in.Method == http.MethodPost {
		// No cross-repository mount (facts.md: not documented by Nexus): the upload
		// starts with 202 and the client sends the blob.
		q := in.URL.Query()
		q.Del("mount")
		q.Del("from")
		in.URL.RawQuery = q.Encode()
	}
	in.RequestURI = in.URL.RequestURI()
	store.app.ServeHTTP(&locationWriter{ResponseWriter: w, prefix: rt.prefix}, in)
}

// locationWriter rewrites the registry's relative locations (/v2/<image>/...) onto the
// repository's prefix.
type locationWriter struct {
	http.ResponseWriter
	prefix string
	wrote  bool
}

func (l *locationWriter) WriteHeader(code int) {
	if !l.wrote {
		l.wrote = true
		if loc := l.Header().Get("Location"); strings.HasPrefix(loc, "/v2/") {
			l.Header().Set("Location", l.prefix+strings.TrimPrefix(loc, "/v2"))
		}
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *locationWriter) Write(b []byte) (int, error) {
	if !l.wrote {
		l.WriteHeader(http.StatusOK)
	}
	return l.ResponseWriter.Write(b)
}

func (l *locationWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// firstFound passes a member's answer on when it has what was asked (2xx or 3xx) and
// drops it otherwise, so that the group can ask the next member.
type firstFound struct {
	http.ResponseWriter
	found, decided bool
}

func (f *firstFound) WriteHeader(code int) {
	if f.decided {
		return
	}
	f.decided, f.found = true, code < 400
	if f.found {
		f.ResponseWriter.WriteHeader(code)
	}
}

func (f *firstFound) Write(b []byte) (int, error) {
	if !f.decided {
		f.WriteHeader(http.StatusOK)
	}
	if !f.found {
		return len(b), nil
	}
	return f.ResponseWriter.Write(b)
}

func (f *firstFound) Header() http.Header {
	if f.decided && !f.found {
		return http.Header{} // a dropped answer's headers go nowhere
	}
	return f.ResponseWriter.Header()
}

// challenge answers a request that must authenticate: forceBasicAuth asks for Basic;
// otherwise Nexus sends clients to its token endpoint. At the root (the version check) it
// asks for a token while the DockerToken realm is active.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request, rt route, cfg repoConfig, realmActive, doublesPort bool) {
	if (rt.repo != "" && cfg.forceBasicAuth) || (rt.repo == "" && !realmActive) {
		w.Header().Set("WWW-Authenticate", basicChallenge)
	} else {
		realm := realmURL(r, rt.base, doublesPort)
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service=%q`, realm, realm))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, unauthorizedBody)
	}
}

// refuseWrite applies the repository's write policy (nexus-public StorageTxImpl: DENY
// "Repository is read only", ALLOW_ONCE "Repository does not allow updating assets"; the
// message names the repository as Nexus 3 answers it). With ALLOW_ONCE a tag that exists
// may not point elsewhere, except latest when latestPolicy allows it.
func (s *Server) refuseWrite(r *http.Request, rt route, cfg repoConfig) (bool, string) {
	write := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodDelete
	if !write {
		return false, ""
	}
	switch cfg.writePolicy {
	case "DENY":
		return true, "Repository is read only: " + rt.repo
	case "ALLOW_ONCE":
		image, ref, ok := strings.Cut(strings.TrimPrefix(rt.rest, "/"), "/manifests/")
		if !ok || r.Method != http.MethodPut || strings.HasPrefix(ref, "sha256:") || (ref == "latest" && cfg.latestPolicy) {
			return false, ""
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			return true, err.Error()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := sha256.Sum256(body)
		head := httptest.NewRequestWithContext(r.Context(), http.MethodHead, "/v2/"+image+"/manifests/"+ref, nil)
		head.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json")
		rec := httptest.NewRecorder()
		s.store(rt.repo).app.ServeHTTP(rec, head)
		if rec.Code == http.StatusOK && rec.Header().Get("Docker-Content-Digest") != "sha256:"+hex.EncodeToString(sum[:]) {
			return true, "Repository does not allow updating assets: " + rt.repo
		}
	}
	return false, ""
}

// token is the DockerToken realm's endpoint: Basic credentials in, a bearer token out.
// Without the realm active, or without valid credentials, Nexus answers 401.
func (s *Server) token(w http.ResponseWriter, r *http.Request, realmActive bool) {
	if r.Method != http.MethodGet {
		// Only GET is known to be served; containerd falls back to GET on 405.
		w.Header().Set("Allow", http.MethodGet)
		dockerError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "Method Not Allowed")
		return
	}
	name, pass, ok := r.BasicAuth()
	s.mu.Lock()
	u, known := s.users[name]
	valid := ok && known && u.password == pass && u.status == "active" && realmActive
	if !ok && realmActive && s.anonymous.enabled && s.anonymous.userID == "anonymous" {
		// No credentials and anonymous access on: a token for the anonymous user. The
		// Bearer Token realm knows only the built-in user "anonymous" (nexus-public#311:
		// another user named for anonymous access gets "authentication required").
		name, valid = "anonymous", true
	}
	var token string
	if valid {
		token = "DockerToken." + randomHex(16)
		s.tokens[token] = name
	}
	s.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", basicChallenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, unauthorizedBody)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": token, "access_token": token})
}

// Writers returns the users who have written to repository repo, in the order they
// first did.
func (s *Server) Writers(repo string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writers[repo])
}

// mayUse says whether user may do method in repo, by the BREAD action nexus-public's
// SecurityFacetSupport.action maps the method to: GET, HEAD, OPTIONS → read; POST, PATCH →
// add; PUT → edit; DELETE → delete — nexus:repository-view:docker:<repo>:<action>, the
// privileges of nx-repository-view-docker-<repo>-*. A push takes add and edit; deleting a
// manifest (DELETE /v2/<name>/manifests/<digest>, answered 202 as by distribution, the call
// nexus-cli's DeleteImageByTag makes) takes delete.
func (s *Server) mayUse(user, method, repo string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	action := map[string]string{http.MethodGet: "read", http.MethodHead: "read", http.MethodOptions: "read",
		http.MethodPost: "add", http.MethodPatch: "add", http.MethodPut: "edit", http.MethodDelete: "delete"}[method]
	return action != "" && s.permitted(user, "nexus:repository-view:docker:"+repo+":"+action)
}

// dockerUser is the user a request authenticates as: Basic credentials (Nexus's security
// filter reads them on every request) or a token from the DockerToken realm while it is
// active. What the user may do is mayUse's.
func (s *Server) dockerUser(r *http.Request) (string, bool) {
	if name, pass, ok := r.BasicAuth(); ok {
		u, known := s.users[name]
		return name, known && u.password == pass && u.status == "active"
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && slices.Contains(s.realms, "DockerToken") {
		name, known := s.tokens[tok]
		return name, known
	}
	return "", false
}

// realmURL is the token endpoint Nexus names in its Bearer challenge: built from the
// request as Jetty's ForwardedRequestCustomizer sees it (X-Forwarded-Proto, -Host). Nexus
// 3.78 to 3.80 double the port when X-Forwarded-Host carries one (nexus-public#611 on
// 3.78.2, #651 on 3.80.0): https://host:5001:5001/v2/token.
func realmURL(r *http.Request, base string, doublesPort bool) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
		host = fh
		if _, port, err := net.SplitHostPort(fh); err == nil && doublesPort {
			host = fh + ":" + port
		}
	}
	return scheme + "://" + host + base + "/v2/token"
}

// repoConfig is what the data path needs of a repository's configuration.
type repoConfig struct {
	kind                                      string // hosted, proxy or group
	forceBasicAuth, pathEnabled, latestPolicy bool
	writePolicy                               string
	members                                   []string // a group's, in order
	remoteURL                                 string   // a proxy's upstream
}

func (s *Server) repoConfig(name string) (repoConfig, bool) {
	raw, ok := s.repos[strings.ToLower(name)]
	if !ok {
		return repoConfig{}, false
	}
	var r struct {
		Type    string `json:"type"`
		Storage struct {
			WritePolicy  string `json:"writePolicy"`
			LatestPolicy bool   `json:"latestPolicy"`
		} `json:"storage"`
		Docker struct {
			ForceBasicAuth bool `json:"forceBasicAuth"`
			PathEnabled    bool `json:"pathEnabled"`
		} `json:"docker"`
		Group struct {
			MemberNames []string `json:"memberNames"`
		} `json:"group"`
		Proxy struct {
			RemoteURL string `json:"remoteUrl"`
		} `json:"proxy"`
	}
	_ = json.Unmarshal(raw, &r)
	return repoConfig{
		kind:           r.Type,
		forceBasicAuth: r.Docker.ForceBasicAuth, pathEnabled: r.Docker.PathEnabled,
		latestPolicy: r.Storage.LatestPolicy, writePolicy: r.Storage.WritePolicy,
		members: r.Group.MemberNames, remoteURL: r.Proxy.RemoteURL,
	}, true
}

// store returns the repository's registry, creating it on first use.
func (s *Server) store(repo string) *dockerStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(repo)
	if st, ok := s.stores[key]; ok {
		return st
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory":    configuration.Parameters{},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
			// Nexus deletes a manifest by digest for a user with the delete privilege
			// (mayUse), as nexus-cli's DeleteImageByTag relies on.
			"delete": configuration.Parameters{"enabled": true},
		},
	}
	if rc, _ := s.repoConfig(repo); rc.kind == typeProxy {
		// A proxy repository: distribution's pull-through cache of the remote, which
		// fetches what it lacks and serves its store when the remote does not answer.
		// Unlike Nexus it asks the remote for a tag on every pull (Nexus waits
		// metadataMaxAge): the emulator's approximation. Content never expires here.
		never := time.Duration(0)
		auth := s.upstreamAuth[key]
		cfg.Proxy = configuration.Proxy{RemoteURL: rc.remoteURL, Username: auth[0], Password: auth[1], TTL: &never}
	}
	cfg.HTTP.Secret = randomHex(32)
	cfg.HTTP.RelativeURLs = true
	cfg.Log.AccessLog.Disabled = true
	quietRegistry.Do(func() { logrus.SetOutput(io.Discard) })
	st := &dockerStore{app: handlers.NewApp(context.Background(), cfg)}
	s.stores[key] = st
	return st
}

func (s *Server) serverHeader() string {
	// Nexus names itself and its version in every answer, e.g. "Nexus/3.84.0-03 (COMMUNITY)"
	// from sonatype/nexus3:3.84.0 ("(OSS)" before the Community Edition).
	return "Nexus/" + s.version + "-03 (COMMUNITY)"
}

func dockerError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": code, "message": msg, "detail": nil}}})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DockerHosted is a docker (hosted) repository for AddDockerHosted.
type DockerHosted struct {
	Name                      string
	ForceBasicAuth            bool
	PathEnabled, LatestPolicy bool
	// WritePolicy is ALLOW (the default), ALLOW_ONCE or DENY.
	WritePolicy string
}

// AddDockerHosted adds a repository as an administrator would have created it, without
// the REST API (whose contract tests are elsewhere), stored as a create through the API
// would store it (PathEnabled dropped before 3.83.0).
func (s *Server) AddDockerHosted(r DockerHosted) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.WritePolicy == "" {
		r.WritePolicy = "ALLOW"
	}
	s.repos[strings.ToLower(r.Name)] = s.answer(map[string]any{
		"name": r.Name, "online": true,
		"storage": map[string]any{"blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": r.WritePolicy, "latestPolicy": r.LatestPolicy},
		"docker":  map[string]any{"v1Enabled": false, "forceBasicAuth": r.ForceBasicAuth, "pathEnabled": r.PathEnabled},
	}, typeHosted, "localhost:8081")
}

// ActivateRealm adds a realm to the active ones, as an administrator would.
func (s *Server) ActivateRealm(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.realms, id) {
		s.realms = append(s.realms, id)
	}
}
