package imagecopy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/test/nexusemulator"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestCopiesIntoNexus copies into the Nexus emulator in each of its URL shapes and ways to
// ask for credentials, and pins what a copy says for the Nexus failures users meet (the
// README's troubleshooting table).
func TestCopiesIntoNexus(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushIndex(t, src.Host+"/library/app:1", []string{"linux/amd64", "linux/arm64"}, 1024, 1)
	testutil.PushIndex(t, src.Host+"/library/app:latest", []string{"linux/amd64"}, 1024, 1)
	cases := []struct {
		name    string
		version string
		repo    nexusemulator.DockerHosted
		realm   bool
		// forwardedPort: a proxy in front sends X-Forwarded-Host with the port.
		forwardedPort bool
		basePath      bool
		// preload pushes tag first with other content (a tag that exists).
		preload string
		tag     string
		wantErr string // "" for a copy that lands
		// wantStatus is the HTTP status the target's error carries (0: no answer to
		// classify, as for a token URL that does not parse).
		wantStatus int
	}{
		{name: "path-based routing with Basic authentication", repo: nexusemulator.DockerHosted{ForceBasicAuth: true, PathEnabled: true}, tag: "1"},
		{name: "path-based routing with bearer tokens", repo: nexusemulator.DockerHosted{PathEnabled: true}, realm: true, tag: "1"},
		{name: "the base path with Basic authentication", repo: nexusemulator.DockerHosted{ForceBasicAuth: true}, basePath: true, tag: "1"},
		{name: "the base path with bearer tokens", repo: nexusemulator.DockerHosted{}, realm: true, basePath: true, tag: "1"},
		{name: "the base path works on Nexus 3.80", version: "3.80.0", repo: nexusemulator.DockerHosted{ForceBasicAuth: true}, basePath: true, tag: "1"},
		{name: "path-based routing on Nexus 3.80 reaches no repository", version: "3.80.0",
			repo: nexusemulator.DockerHosted{ForceBasicAuth: true, PathEnabled: true}, tag: "1",
			wantErr: "NAME_UNKNOWN: repository name not known to registry", wantStatus: 404},
		{name: "bearer tokens without the DockerToken realm are refused", repo: nexusemulator.DockerHosted{}, basePath: true, tag: "1",
			wantErr: "UNAUTHORIZED: access to the requested resource is not authorized", wantStatus: 401},
		{name: "Nexus 3.80 behind a proxy sending X-Forwarded-Host with a port names a token URL with the port twice",
			version: "3.80.0", repo: nexusemulator.DockerHosted{}, realm: true, basePath: true, forwardedPort: true, tag: "1",
			wantErr: "invalid port"},
		{name: "AllowOnce refuses to move a tag", repo: nexusemulator.DockerHosted{ForceBasicAuth: true, PathEnabled: true, WritePolicy: "ALLOW_ONCE"},
			preload: "1", tag: "1", wantErr: "DENIED: Repository does not allow updating assets: my-docker", wantStatus: 400},
		{name: "AllowOnce refuses to move latest unless latestPolicy allows it", repo: nexusemulator.DockerHosted{ForceBasicAuth: true, PathEnabled: true, WritePolicy: "ALLOW_ONCE"},
			preload: "latest", tag: "latest", wantErr: "DENIED: Repository does not allow updating assets: my-docker", wantStatus: 400},
		{name: "AllowOnce with latestPolicy moves latest", repo: nexusemulator.DockerHosted{ForceBasicAuth: true, PathEnabled: true, WritePolicy: "ALLOW_ONCE", LatestPolicy: true},
			preload: "latest", tag: "latest"},
		{name: "Deny refuses every push", repo: nexusemulator.DockerHosted{ForceBasicAuth: true, PathEnabled: true, WritePolicy: "DENY"}, tag: "1",
			wantErr: "DENIED: Repository is read only: my-docker", wantStatus: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := nexusemulator.New("nexus-password")
			if tc.version != "" {
				fake.SetVersion(tc.version)
			}
			tc.repo.Name = "my-docker"
			fake.AddDockerHosted(tc.repo)
			if tc.realm {
				fake.ActivateRealm("DockerToken")
			}
			var h http.Handler = fake
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.forwardedPort {
					r.Header.Set("X-Forwarded-Host", r.Host) // 127.0.0.1:<port>
				}
				h.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			host := strings.TrimPrefix(srv.URL, "http://")
			dst := imagecopy.Endpoint{Repository: host + "/my-docker/app", Insecure: true,
				Auth: &authn.Basic{Username: "admin", Password: "nexus-password"}}
			if tc.basePath {
				dst.Repository, dst.PathPrefix = host+"/app", "/repository/my-docker/v2"
			}
			if tc.preload != "" {
				testutil.PushIndex(t, src.Host+"/library/other:"+tc.preload, []string{"linux/amd64"}, 512, 1)
				pre, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/other", Insecure: true}, dst, imagecopy.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if res := pre.CopyTag(context.Background(), tc.preload); res.Err != nil {
					t.Fatalf("preloading %s: %v", tc.preload, res.Err)
				}
			}
			eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app", Insecure: true}, dst, imagecopy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			res := eng.CopyTag(context.Background(), tc.tag)
			switch {
			case tc.wantErr == "" && res.Err != nil:
				t.Fatalf("copy: %v", res.Err)
			case tc.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr)):
				t.Fatalf("copy: %v, want an error with %q", res.Err, tc.wantErr)
			case tc.wantErr != "":
				var se *imagecopy.SideError
				if !errors.As(res.Err, &se) || se.Side != "target" || se.StatusCode != tc.wantStatus {
					t.Errorf("copy error %#v: want the target's, with HTTP status %d", res.Err, tc.wantStatus)
				}
				t.Logf("as pinned: %v", res.Err)
			}
		})
	}
}

// TestPruneDeletesFromNexusOnlyWithTheDeletePrivilege: Nexus deletes a manifest by digest
// for a user holding nx-repository-view-docker-<repo>-delete; a push user (add and edit)
// is refused, and the prune says which privilege is missing.
func TestPruneDeletesFromNexusOnlyWithTheDeletePrivilege(t *testing.T) {
	t.Parallel()
	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	testutil.PushImage(t, src.Host+"/library/app:old", 256, 1)
	fake := nexusemulator.New("nexus-password")
	fake.AddDockerHosted(nexusemulator.DockerHosted{Name: "my-docker", ForceBasicAuth: true, PathEnabled: true})
	fake.AddUser("pusher", "push-password", "nexus:repository-view:docker:my-docker:add", "nexus:repository-view:docker:my-docker:edit",
		"nexus:repository-view:docker:my-docker:read")
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	engine := func(user, password string) *imagecopy.Engine {
		eng, err := imagecopy.New(imagecopy.Endpoint{Repository: src.Host + "/library/app", Insecure: true},
			imagecopy.Endpoint{Repository: host + "/my-docker/app", Insecure: true, Auth: &authn.Basic{Username: user, Password: password}}, imagecopy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	res := engine("pusher", "push-password").CopyTag(context.Background(), "old")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	owned := []imagecopy.Owned{{Tag: "old", Digest: res.TargetDigest}}
	got, err := engine("pusher", "push-password").Prune(context.Background(), owned, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Removed || !errors.Is(got[0].Err, imagecopy.ErrDeleteRefused) || !strings.Contains(got[0].Err.Error(), "nx-repository-view-docker-<repository>-delete") {
		t.Errorf("a push user's prune: %+v", got[0])
	}
	got, err = engine("admin", "nexus-password").Prune(context.Background(), owned, nil, false)
	if err != nil || !got[0].Removed || got[0].Err != nil {
		t.Fatalf("an admin's prune: %+v %v", got, err)
	}
	again, err := engine("admin", "nexus-password").Prune(context.Background(), owned, nil, false)
	if err != nil || again[0].Kept != imagecopy.KeptGone {
		t.Errorf("after the delete, the tag is %+v (%v), want gone", again, err)
	}
}
