package nexus_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/nexus/nexusfake"
)

// The tests in this file are contract tests: the client against nexusfake, a strict
// stand-in built from Sonatype's published REST API (Nexus itself cannot run here).

func fake(t *testing.T) (*nexusfake.Server, string) {
	t.Helper()
	f := nexusfake.New("initial-admin-password")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func client(t *testing.T, url, user, pass string) *nexus.Client {
	t.Helper()
	c, err := nexus.New(url, user, pass, nil)
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
		{"a missing blob store names the field", func() error {
			r := myDocker()
			r.Storage.BlobStoreName = "fast"
			return admin.CreateDockerHosted(ctx, r)
		}, 400, "storage.blobStoreName: Blob store 'fast' does not exist"},
		{"an unknown realm is refused", func() error { return admin.SetActiveRealms(ctx, []string{"NoSuchRealm"}) }, 400, "Unknown realm: NoSuchRealm"},
		{"a missing repository is a 404", func() error {
			_, err := admin.DockerHosted(ctx, "absent")
			return err
		}, 404, "Repository not found"},
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
// above could fail: unknown fields, wrong content types, wrong methods.
func TestTheFakeIsStrict(t *testing.T) {
	t.Parallel()
	_, url := fake(t)
	cases := []struct {
		name, method, path, contentType, body string
		want                                  int
	}{
		{"an unknown field in a repository", http.MethodPost, "/service/rest/v1/repositories/docker/hosted", "application/json",
			`{"name":"x","online":true,"storage":{"blobStoreName":"default","strictContentTypeValidation":true,"writePolicy":"ALLOW"},"docker":{"v1Enabled":false,"forceBasicAuth":true},"typo":1}`, 400},
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
			resp, err := http.DefaultClient.Do(req)
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
