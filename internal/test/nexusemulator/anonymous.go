package nexusemulator

import (
	"net/http"
	"slices"
	"strings"
)

// Anonymous access, as nexus-public's AnonymousAccessApiResource (@since 3.24) serves it at
// /v1/security/anonymous: GET (nexus:settings:read) and PUT (nexus:settings:update) of
// AnonymousAccessSettingsXO {enabled, userId, realmName}; a realmName no realm of the
// security manager has is 400 ValidationErrorsException("realmName", "Realm does not
// exist"). The defaults are AnonymousConfiguration's: user "anonymous" of realm
// "NexusAuthorizingRealm", which a new Nexus has with role nx-anonymous (read and browse on
// every repository). Whether it starts enabled is the onboarding wizard's choice; the
// emulator starts with it off, as an administrator who chose "Disable anonymous access",
// and AllowAnonymous sets it as one who chose otherwise.

const pathAnonymous = "/service/rest/v1/security/anonymous"

// anonymousSettings is AnonymousConfiguration.
type anonymousSettings struct {
	enabled           bool
	userID, realmName string
}

// anonymousXO is AnonymousAccessSettingsXO.
type anonymousXO struct {
	Enabled   bool   `json:"enabled"`
	UserID    string `json:"userId"`
	RealmName string `json:"realmName"`
}

// serveAnonymous serves /v1/security/anonymous. The lock is held.
func (s *Server) serveAnonymous(w http.ResponseWriter, r *http.Request) {
	perm := "nexus:settings:read"
	if r.Method == http.MethodPut {
		perm = "nexus:settings:update"
	}
	if !s.allowed(w, r, perm) || !s.method(w, r, http.MethodGet, http.MethodPut) {
		return
	}
	if r.Method == http.MethodPut {
		var in anonymousXO
		if _, ok := decode(w, r, &in); !ok {
			return
		}
		// The realms the security manager holds: the authorizing realm and the active ones.
		if in.RealmName != "NexusAuthorizingRealm" && !slices.Contains(s.realms, in.RealmName) {
			validation(w, "realmName", "Realm does not exist")
			return
		}
		s.anonymous = anonymousSettings{enabled: in.Enabled, userID: in.UserID, realmName: in.RealmName}
	}
	writeJSON(w, http.StatusOK, anonymousXO{Enabled: s.anonymous.enabled, UserID: s.anonymous.userID, RealmName: s.anonymous.realmName})
}

// AllowAnonymous turns anonymous access on or off, as an administrator would in the UI.
func (s *Server) AllowAnonymous(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anonymous.enabled = on
}

// Anonymous says whether anonymous access is on, and as which user.
func (s *Server) Anonymous() (enabled bool, userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.anonymous.enabled, s.anonymous.userID
}

// UpstreamCredentials returns the user and password a proxy repository holds for its
// remote (which no GET shows).
func (s *Server) UpstreamCredentials(repo string) (user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.upstreamAuth[strings.ToLower(repo)]
	return a[0], a[1]
}
