package nexus_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/test/nexusemulator"
)

// The tests in this file are contract tests: the client against nexusemulator, a strict
// stand-in built from Sonatype's published REST API (Nexus itself cannot run here).

func fake(t *testing.T) (*nexusemulator.Server, string) {
	t.Helper()
	f := nexusemulator.New("initial-admin-password")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// httpClient is the tests' own: closing an httptest server closes http.DefaultTransport's
// idle connections, which breaks requests of parallel tests under way on it.
var httpClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

func client(t *testing.T, url, user, pass string) *nexus.Client {
	t.Helper()
	c, err := nexus.New(url, user, pass, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func myDocker() *nexus.DockerHostedRepository {
	return &nexus.DockerHostedRepository{
		Name: "my-docker", Online: true,
		Storage: nexus.HostedStorage{BlobStoreName: "default", StrictContentTypeValidation: true, WritePolicy: nexus.WritePolicyAllow},
		Docker:  nexus.Docker{ForceBasicAuth: true, PathEnabled: ptr(true)},
	}
}

func TestContractFirstStartToARepository(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	ctx := context.Background()
	anon := client(t, url, "", "")
	if err := anon.Writable(ctx); err != nil {
		t.Fatalf("writable: %v", err)
	}
	f.SetWritable(false)
	if err := anon.Writable(ctx); err == nil {
		t.Error("a read-only Nexus was reported writable")
	}
	f.SetWritable(true)

	// A new Nexus's first steps: the initial password, then a password of our own.
	admin := client(t, url, "admin", "initial-admin-password")
	if err := admin.ChangePassword(ctx, "admin", "s3cret-generated"); err != nil {
		t.Fatal(err)
	}
	if f.Password("admin") != "s3cret-generated" {
		t.Fatal("the password did not change")
	}
	if _, err := admin.ActiveRealms(ctx); !nexus.IsUnauthorized(err) {
		t.Errorf("the old password still works: %v", err)
	}
	admin = client(t, url, "admin", "s3cret-generated")

	// The Docker Bearer Token realm, after those already active; once.
	changed, err := admin.EnsureRealm(ctx, nexus.RealmDockerToken)
	if err != nil || !changed {
		t.Fatalf("EnsureRealm: %v %v", changed, err)
	}
	if got := f.Realms(); !slices.Equal(got, []string{nexus.RealmLocalAuthenticating, nexus.RealmDockerToken}) {
		t.Errorf("realms %v", got)
	}
	if changed, err := admin.EnsureRealm(ctx, nexus.RealmDockerToken); err != nil || changed {
		t.Errorf("EnsureRealm again: %v %v", changed, err)
	}

	// The "docker (hosted)" repository with path-based routing: created, then unchanged,
	// then updated when the spec changes.
	if a, err := admin.EnsureDockerHosted(ctx, myDocker()); err != nil || a != nexus.Created {
		t.Fatalf("create: %v %v", a, err)
	}
	got := f.Repository("my-docker")
	if got["docker"].(map[string]any)["pathEnabled"] != true || got["storage"].(map[string]any)["writePolicy"] != "ALLOW" || got["format"] != "docker" {
		t.Errorf("stored repository %v", got)
	}
	before := len(f.Requests())
	if a, err := admin.EnsureDockerHosted(ctx, myDocker()); err != nil || a != nexus.Unchanged {
		t.Errorf("again: %v %v", a, err)
	}
	if reqs := f.Requests()[before:]; !slices.Equal(reqs, []string{"GET /service/rest/v1/repositories/docker/hosted/my-docker"}) {
		t.Errorf("an unchanged repository cost %v, want one GET", reqs)
	}
	deny := myDocker()
	deny.Storage.WritePolicy = nexus.WritePolicyAllowOnce
	if a, err := admin.EnsureDockerHosted(ctx, deny); err != nil || a != nexus.Updated {
		t.Errorf("update: %v %v", a, err)
	}
	if got := f.Repository("my-docker"); got["storage"].(map[string]any)["writePolicy"] != "ALLOW_ONCE" {
		t.Errorf("after the update %v", got)
	}
}

func TestContractErrorsCarryNexusText(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	f.AddUser("dev", "dev-password")
	ctx := context.Background()
	admin := client(t, url, "admin", "initial-admin-password")
	cases := []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"a wrong password is a 401", func() error {
			_, err := client(t, url, "admin", "nope").ActiveRealms(ctx)
			return err
		}, 401, "Unauthorized"},
		{"a user without the admin role is a 403", func() error {
			_, err := client(t, url, "dev", "dev-password").EnsureDockerHosted(ctx, myDocker())
			return err
		}, 403, "Forbidden"},
		{"a bad repository name is Nexus's validation message", func() error {
			r := myDocker()
			r.Name = "my docker"
			return admin.CreateDockerHosted(ctx, r)
		}, 400, "name: Only letters"},
		// Nexus refuses a blob store it lacks; its wording is not in the public sources, so
		// only the status is asserted.
		{"a missing blob store is refused", func() error {
			r := myDocker()
			r.Storage.BlobStoreName = "fast"
			return admin.CreateDockerHosted(ctx, r)
		}, 400, "HTTP 400"},
		// RealmApiResource answers text/plain.
		{"an unknown realm is refused", func() error { return admin.SetActiveRealms(ctx, []string{"NoSuchRealm"}) }, 400, "Unknown realmIds: [NoSuchRealm]"},
		{"a Pro-only realm is unknown to Nexus OSS", func() error { return admin.SetActiveRealms(ctx, []string{"SamlRealm"}) }, 400, "Unknown realmIds: [SamlRealm]"},
		{"a name starting with an underscore is refused", func() error {
			r := myDocker()
			r.Name = "_docker"
			return admin.CreateDockerHosted(ctx, r)
		}, 400, "name: Only letters"},
		{"an upper-case docker repository name is refused where path routing exists", func() error {
			r := myDocker()
			r.Name = "My-Docker"
			return admin.CreateDockerHosted(ctx, r)
		}, 400, "must be lowercase to support path-based routing"},
		{"a blank password is refused", func() error { return admin.ChangePassword(ctx, "admin", " ") }, 400, "Password must be supplied."},
		{"a user without the nexus:* privilege cannot change even its own password", func() error {
			return client(t, url, "dev", "dev-password").ChangePassword(ctx, "dev", "new-password")
		}, 403, "Forbidden"},
		// One ValidationErrorXO whose message is quoted: read as its text, not as JSON.
		{"a missing repository is a 404", func() error {
			_, err := admin.DockerHosted(ctx, "absent")
			return err
		}, 404, ": Repository not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ne *nexus.Error
			if !errors.As(err, &ne) || ne.StatusCode != tc.status || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want HTTP %d with %q", err, tc.status, tc.want)
			}
		})
	}
}

// TestTheFakeIsStrict shows the fake refuses what Nexus refuses, so that the contract tests
// above could fail — malformed bodies, wrong content types, wrong methods — and accepts
// what Nexus accepts.
func TestTheFakeIsStrict(t *testing.T) {
	t.Parallel()
	_, url := fake(t)
	cases := []struct {
		name, method, path, contentType, body string
		want                                  int
	}{
		{"malformed JSON", http.MethodPost, "/service/rest/v1/repositories/docker/hosted", "application/json", `{"name":`, 400},
		// Nexus ignores fields it does not know (ObjectMapperProvider: FAIL_ON_UNKNOWN_PROPERTIES off).
		{"an unknown field in a repository is ignored", http.MethodPost, "/service/rest/v1/repositories/docker/hosted", "application/json",
			`{"name":"x","online":true,"storage":{"blobStoreName":"default","strictContentTypeValidation":true,"writePolicy":"ALLOW"},"docker":{"v1Enabled":false,"forceBasicAuth":true},"typo":1}`, 201},
		{"a repository sent as form data", http.MethodPost, "/service/rest/v1/repositories/docker/hosted", "application/x-www-form-urlencoded", "name=x", 415},
		{"a password sent as JSON", http.MethodPut, "/service/rest/v1/security/users/admin/change-password", "application/json", `"x"`, 415},
		{"DELETE on the realms", http.MethodDelete, "/service/rest/v1/security/realms/active", "", "", 405},
		{"an unknown path", http.MethodGet, "/service/rest/v1/nope", "", "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url+tc.path, strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			req.SetBasicAuth("admin", "initial-admin-password")
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("HTTP %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestEveryErrorShapeOfNexusReadsAsItsMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, contentType, body, want string
	}{
		// WebApplicationMessageException: one ValidationErrorXO, the message quoted.
		{"one object with a quoted message", "application/json", `{"id":"*","message":"\"Repository not found\""}`, "Repository not found"},
		{"one object with an id", "application/json", `{"id":"BlobStoreName","message":"Blob store not found"}`, "BlobStoreName: Blob store not found"},
		// ResteasyViolationExceptionMapper: a list.
		{"a list of validation errors", "application/json", `[{"id":"PARAMETER name","message":"must not be empty"},{"id":"PARAMETER online","message":"must not be null"}]`,
			"PARAMETER name: must not be empty; PARAMETER online: must not be null"},
		// RealmApiResource: text/plain.
		{"plain text", "text/plain", "Unknown realmIds: [NoSuchRealm]", "Unknown realmIds: [NoSuchRealm]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			_, err := client(t, srv.URL, "admin", "x").ActiveRealms(context.Background())
			var ne *nexus.Error
			if !errors.As(err, &ne) || ne.Message != tc.want || strings.Contains(err.Error(), `{"`) {
				t.Errorf("err = %v, want the message %q", err, tc.want)
			}
		})
	}
}

func TestAnUpdateKeepsWhatRegwireDoesNotManage(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	ctx := context.Background()
	// A repository made in Nexus's UI, with a field regwire's client does not know.
	req, _ := http.NewRequest(http.MethodPost, url+"/service/rest/v1/repositories/docker/hosted", strings.NewReader(
		`{"name":"my-docker","online":true,"storage":{"blobStoreName":"default","strictContentTypeValidation":true,"writePolicy":"ALLOW","latestPolicy":true},`+
			`"docker":{"v1Enabled":false,"forceBasicAuth":true,"pathEnabled":true},"cleanup":{"policyNames":["weekly"]}}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("admin", "initial-admin-password")
	resp, err := httpClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("%v %v", err, resp)
	}
	_ = resp.Body.Close()
	once := myDocker()
	once.Storage.WritePolicy = nexus.WritePolicyAllowOnce
	if a, err := client(t, url, "admin", "initial-admin-password").EnsureDockerHosted(ctx, once); err != nil || a != nexus.Updated {
		t.Fatalf("update: %v %v", a, err)
	}
	got := f.Repository("my-docker")
	st := got["storage"].(map[string]any)
	if st["writePolicy"] != "ALLOW_ONCE" || st["latestPolicy"] != true || got["cleanup"].(map[string]any)["policyNames"].([]any)[0] != "weekly" {
		t.Errorf("after the update %v: latestPolicy and cleanup must survive", got)
	}
}

func TestPathRoutingOnANexusThatLacksItIsAnErrorNamingTheVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("a Nexus that says its version is refused before any write", func(t *testing.T) {
		t.Parallel()
		f, url := fake(t)
		f.SetVersion("3.80.0")
		_, err := client(t, url, "admin", "initial-admin-password").EnsureDockerHosted(ctx, myDocker())
		var pr *nexus.PathRoutingUnsupportedError
		if !errors.As(err, &pr) || pr.Version != "3.80.0" || !strings.Contains(err.Error(), "3.83.0") || !strings.Contains(err.Error(), "/repository/my-docker/v2") {
			t.Fatalf("err = %v", err)
		}
		for _, r := range f.Requests() {
			if !strings.HasPrefix(r, "GET ") {
				t.Errorf("wrote to a Nexus without path routing: %s", r)
			}
		}
	})
	t.Run("a Nexus that hides its version and drops the field is found out by reading it back", func(t *testing.T) {
		t.Parallel()
		f := nexusemulator.New("initial-admin-password")
		f.SetVersion("3.80.0")
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.ServeHTTP(hideServer{w}, r) // a proxy in front strips the Server header
		}))
		t.Cleanup(srv.Close)
		_, err := client(t, srv.URL, "admin", "initial-admin-password").EnsureDockerHosted(ctx, myDocker())
		var pr *nexus.PathRoutingUnsupportedError
		if !errors.As(err, &pr) || pr.Version != "" {
			t.Fatalf("err = %v, want path routing unsupported (version unknown)", err)
		}
		if f.Repository("my-docker") == nil {
			t.Fatal("the test proves nothing: the repository was never written")
		}
	})
}

// hideServer drops the Server header of an answer.
type hideServer struct{ http.ResponseWriter }

func (h hideServer) WriteHeader(code int) {
	h.Header().Del("Server")
	h.ResponseWriter.WriteHeader(code)
}

func (h hideServer) Write(b []byte) (int, error) {
	h.Header().Del("Server")
	return h.ResponseWriter.Write(b)
}

// TestPrivilegesNotRoles: Nexus checks privileges (Shiro wildcard permissions), not the
// admin role: a user with a repository's admin privileges manages it and nothing else
// (AuthorizingRepositoryManager: nexus:repository-admin:<format>:<name>:<action>;
// RealmApiResource: nexus:settings:read|update).
func TestPrivilegesNotRoles(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	f.AddUser("ci", "ci-password", "nexus:repository-admin:docker:my-docker:add,edit,read")
	ctx := context.Background()
	ci := client(t, url, "ci", "ci-password")
	if a, err := ci.EnsureDockerHosted(ctx, myDocker()); err != nil || a != nexus.Created {
		t.Fatalf("a user with my-docker's admin privileges: %v %v, want it created", a, err)
	}
	other := myDocker()
	other.Name = "other"
	if err := ci.CreateDockerHosted(ctx, other); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("another repository: %v, want HTTP 403", err)
	}
	if _, err := ci.ActiveRealms(ctx); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("reading the realms without nexus:settings:read: %v, want HTTP 403", err)
	}
}

// TestTheInitialPasswordFileGoesWithTheInitialPassword: Nexus writes admin's initial
// password to admin.password (owner-readable) and deletes it when the password changes,
// so whoever changes it must have written the new one down first.
func TestTheInitialPasswordFileGoesWithTheInitialPassword(t *testing.T) {
	t.Parallel()
	f, url := fake(t)
	work := t.TempDir()
	if err := f.WriteAdminPasswordFile(work); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(work, "admin.password")
	b, err := os.ReadFile(file)
	if err != nil || string(b) != "initial-admin-password" {
		t.Fatalf("admin.password: %q %v", b, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.password mode %v, want 0600", fi.Mode().Perm())
	}
	if err := client(t, url, "admin", "initial-admin-password").ChangePassword(context.Background(), "admin", "new-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin.password after the change: %v, want it deleted", err)
	}
}
