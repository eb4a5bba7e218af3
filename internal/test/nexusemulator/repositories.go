package nexusemulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// The repositories resources of the docker format, one per type:
// /service/rest/v1/repositories/docker/{hosted,proxy,group}: POST creates (201), GET and
// PUT /{name} read (200) and replace (204). What all types share is nexus-public's
// AbstractRepositoriesApiResource (@since 3.20): create and update need authentication,
// convert the request and hand it to AuthorizingRepositoryManager (which checks
// nexus:repository-admin:docker:<name>:add, or :edit for an update); an update naming
// another repository than its path is 400 "Renaming a repository is not supported". The
// request bodies are nexus-public's HostedRepositoryApiRequest, ProxyRepositoryApiRequest
// and GroupRepositoryApiRequest (rest/api/model) with the docker attributes Sonatype's
// OpenAPI adds (the docker format itself is not in nexus-public): docker {v1Enabled,
// forceBasicAuth} on every type, dockerProxy {indexType} on proxies.

const prefixDockerRepos = "/service/rest/v1/repositories/docker/"

// Repository types.
const (
	typeHosted = "hosted"
	typeProxy  = "proxy"
	typeGroup  = "group"
)

// serveRepositories serves rest, what follows prefixDockerRepos: "<type>" or
// "<type>/<name>". The lock is held.
func (s *Server) serveRepositories(w http.ResponseWriter, r *http.Request, rest string) {
	kind, name, named := strings.Cut(rest, "/")
	if !slices.Contains([]string{typeHosted, typeProxy, typeGroup}, kind) || (named && name == "") {
		http.NotFound(w, r)
		return
	}
	if !named {
		if _, ok := s.authenticated(w, r); !ok || !s.method(w, r, http.MethodPost) {
			return
		}
		body, repoName, ok := s.decodeRepository(w, r, kind)
		if !ok {
			return
		}
		// AuthorizingRepositoryManager.create: ensureUserCanAdmin(ADD, format, name), i.e.
		// nexus:repository-admin:docker:<name>:add.
		if !s.allowed(w, r, "nexus:repository-admin:docker:"+repoName+":add") {
			return
		}
		if _, exists := s.repos[strings.ToLower(repoName)]; exists {
			// The @Unique…Name validators' message (nexus-public coreui UniqueBlobStoreName
			// has the same default).
			validation(w, "name", "Name is already used, must be unique (ignoring case)")
			return
		}
		s.keep(repoName, kind, body, r.Host)
		w.WriteHeader(http.StatusCreated)
		return
	}
	// Reading needs the repository's admin read privilege, an update its edit one.
	action := "read"
	if r.Method == http.MethodPut {
		action = "edit"
	}
	if !s.allowed(w, r, "nexus:repository-admin:docker:"+name+":"+action) || !s.method(w, r, http.MethodGet, http.MethodPut) {
		return
	}
	raw, exists := s.repos[strings.ToLower(name)]
	if !exists || repoType(raw) != kind {
		// A WebApplicationMessageException: one ValidationErrorXO whose message is
		// itself quoted (nexus-public components/nexus-rest WebApplicationMessageException).
		// A repository of another type is not found either: the emulator's own reading,
		// as each type's resource looks the repository up for its own type.
		writeJSON(w, http.StatusNotFound, map[string]string{"id": "*", "message": `"Repository not found"`})
		return
	}
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(raw)
		return
	}
	body, repoName, ok := s.decodeRepository(w, r, kind)
	if !ok {
		return
	}
	if repoName != name {
		validation(w, "name", "Renaming a repository is not supported")
		return
	}
	s.keep(name, kind, body, r.Host)
	w.WriteHeader(http.StatusNoContent)
}

// decodeRepository reads and checks a request body of type kind, answering Nexus's 400
// when something is wrong; it returns the body and the repository's name.
func (s *Server) decodeRepository(w http.ResponseWriter, r *http.Request, kind string) (map[string]any, string, bool) {
	var req repositoryRequest
	body, ok := decode(w, r, &req)
	if !ok || !s.valid(w, &req, kind) {
		return nil, "", false
	}
	return body, *req.Name, true
}

// keep stores a repository as a GET answers it; its content is the data path's.
func (s *Server) keep(name, kind string, body map[string]any, host string) {
	key := strings.ToLower(name)
	if kind == typeProxy {
		// The upstream password is write-only (nexus-public
		// HttpClientConnectionAuthenticationAttributes: @JsonProperty(access = WRITE_ONLY)):
		// kept apart from what a GET shows.
		var req repositoryRequest
		b, _ := json.Marshal(body)
		_ = json.Unmarshal(b, &req)
		if a := req.HTTPClient.Authentication; a != nil && a.Username != "" {
			s.upstreamAuth[key] = [2]string{a.Username, a.Password}
		} else {
			delete(s.upstreamAuth, key)
		}
		delete(s.stores, key) // a new remote or credentials: a new pull-through cache
	}
	s.repos[key] = s.answer(body, kind, host)
}

// repositoryRequest is the request body of every type; valid checks the parts a type
// requires.
type repositoryRequest struct {
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
	// Proxies (ProxyAttributes, NegativeCacheAttributes, HttpClientAttributes: each field
	// @NotNull or @NotEmpty as listed).
	Proxy *struct {
		RemoteURL      string `json:"remoteUrl"`
		ContentMaxAge  *int   `json:"contentMaxAge"`
		MetadataMaxAge *int   `json:"metadataMaxAge"`
	} `json:"proxy"`
	NegativeCache *struct {
		Enabled    *bool `json:"enabled"`
		TimeToLive *int  `json:"timeToLive"`
	} `json:"negativeCache"`
	HTTPClient struct {
		Blocked        *bool `json:"blocked"`
		AutoBlock      *bool `json:"autoBlock"`
		Authentication *struct {
			Type     string `json:"type"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"authentication"`
	} `json:"httpClient"`
	DockerProxy *struct {
		IndexType string `json:"indexType"`
		IndexURL  string `json:"indexUrl"`
	} `json:"dockerProxy"`
	// Groups (GroupAttributes: memberNames @NotEmpty; writableMember is
	// GroupDeployAttributes', a Pro feature).
	Group *struct {
		MemberNames    []string `json:"memberNames"`
		WritableMember string   `json:"writableMember"`
	} `json:"group"`
}

// repoNamePattern is Nexus's rule for repository names: a letter, digit or hyphen first,
// then letters, digits, underscores, hyphens and dots (nexus-public RepositoryXO's
// @Pattern, whose message valid answers).
var repoNamePattern = regexp.MustCompile(`^[a-zA-Z0-9\-][a-zA-Z0-9_\-.]*$`)

// valid checks what Nexus checks of a request of type kind, answering its 400 when
// something is wrong. The lock is held.
func (s *Server) valid(w http.ResponseWriter, r *repositoryRequest, kind string) bool {
	switch {
	case r.Name == nil || *r.Name == "":
		// Bean validation's default messages (@NotEmpty, @NotNull) from here on.
		validation(w, "name", "must not be empty")
	case !repoNamePattern.MatchString(*r.Name):
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
		// A 400 list naming the field; the wording is the emulator's own (no source for
		// Nexus's text was found in nexus-public).
		validation(w, "storage.blobStoreName", fmt.Sprintf("Blob store '%s' does not exist", r.Storage.BlobStoreName))
	case kind == typeHosted && !slices.Contains([]string{"ALLOW", "ALLOW_ONCE", "DENY"}, strings.ToUpper(r.Storage.WritePolicy)):
		// The emulator's own wording, as for the messages below that no source gives.
		validation(w, "storage.writePolicy", "must be one of ALLOW, ALLOW_ONCE, DENY")
	case r.Docker == nil || r.Docker.V1Enabled == nil || r.Docker.ForceBasicAuth == nil:
		validation(w, "docker", "v1Enabled and forceBasicAuth must not be null")
	case kind == typeProxy:
		return s.validProxy(w, r)
	case kind == typeGroup:
		return s.validGroup(w, r)
	default:
		return true
	}
	return false
}

func (s *Server) validProxy(w http.ResponseWriter, r *repositoryRequest) bool {
	switch {
	case r.Proxy == nil || r.Proxy.ContentMaxAge == nil || r.Proxy.MetadataMaxAge == nil:
		validation(w, "proxy", "must not be null")
	case r.Proxy.RemoteURL == "":
		validation(w, "proxy.remoteUrl", "must not be empty")
	case !strings.HasPrefix(r.Proxy.RemoteURL, "http://") && !strings.HasPrefix(r.Proxy.RemoteURL, "https://"):
		validation(w, "proxy.remoteUrl", "must be an http or https URL")
	case r.NegativeCache == nil || r.NegativeCache.Enabled == nil || r.NegativeCache.TimeToLive == nil:
		validation(w, "negativeCache", "must not be null")
	case r.HTTPClient.Blocked == nil || r.HTTPClient.AutoBlock == nil:
		validation(w, "httpClient", "must not be null")
	case r.HTTPClient.Authentication != nil && r.HTTPClient.Authentication.Type == "":
		// HttpClientConnectionAuthenticationAttributes.type is @NotEmpty.
		validation(w, "httpClient.authentication.type", "must not be empty")
	case r.DockerProxy == nil || !slices.Contains([]string{"HUB", "REGISTRY", "CUSTOM"}, r.DockerProxy.IndexType):
		// DockerProxyAttributes.indexType: required, HUB | REGISTRY | CUSTOM (Sonatype's OpenAPI).
		validation(w, "dockerProxy.indexType", "must be one of HUB, REGISTRY, CUSTOM")
	default:
		return true
	}
	return false
}

func (s *Server) validGroup(w http.ResponseWriter, r *repositoryRequest) bool {
	if r.Group == nil || len(r.Group.MemberNames) == 0 {
		validation(w, "group.memberNames", "must not be empty")
		return false
	}
	if r.Group.WritableMember != "" {
		// Deploying through a group is Pro-only (nexus-public GroupHandler.INSUFFICIENT_LICENSE).
		validation(w, "group.writableMember", "Deploying to groups is a PRO-licensed feature. See https://links.sonatype.com/product-nexus-repository")
		return false
	}
	for _, m := range r.Group.MemberNames {
		if _, ok := s.repos[strings.ToLower(m)]; !ok || strings.EqualFold(m, *r.Name) {
			// The emulator's own wording: a group's members must be repositories of its
			// format, and not the group itself.
			validation(w, "group.memberNames", fmt.Sprintf("Repository '%s' is not a docker repository that can be a member", m))
			return false
		}
	}
	return true
}

// answer is what a GET returns for a stored repository: what the request set, less what
// this version does not know and what is write-only, plus the fields Nexus adds (format,
// type, its URL).
func (s *Server) answer(body map[string]any, kind, host string) json.RawMessage {
	if st, ok := body["storage"].(map[string]any); ok {
		if wp, ok := st["writePolicy"].(string); ok {
			st["writePolicy"] = strings.ToUpper(wp)
		}
	}
	if d, ok := body["docker"].(map[string]any); ok && !s.keepsPathEnabled() {
		delete(d, "pathEnabled")
	}
	if hc, ok := body["httpClient"].(map[string]any); ok {
		if a, ok := hc["authentication"].(map[string]any); ok {
			delete(a, "password")
		}
	}
	body["format"], body["type"] = "docker", kind
	body["url"] = "http://" + host + "/repository/" + body["name"].(string)
	out, _ := json.Marshal(body)
	return out
}

// repoType is the type of a stored repository.
func repoType(raw json.RawMessage) string {
	var r struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.Type
}
