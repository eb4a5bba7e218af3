package nexusemulator_test

import (
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// upstream is a registry standing in for Docker Hub, holding library/hello:1.0.
func upstream(t *testing.T) (*httptest.Server, v1.Image) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, host(srv)+"/library/hello:1.0"), img); err != nil {
		t.Fatal(err)
	}
	return srv, img
}

// proxyBody is the create body of a docker proxy repository docker-hub, as Sonatype
// documents it.
func proxyBody(remoteURL string) map[string]any {
	return map[string]any{
		"name": "docker-hub", "online": true,
		"storage":       map[string]any{"blobStoreName": "default", "strictContentTypeValidation": true},
		"proxy":         map[string]any{"remoteUrl": remoteURL, "contentMaxAge": 1440, "metadataMaxAge": 1440},
		"negativeCache": map[string]any{"enabled": true, "timeToLive": 1440},
		"httpClient":    map[string]any{"blocked": false, "autoBlock": true},
		"docker":        map[string]any{"v1Enabled": false, "forceBasicAuth": false, "pathEnabled": true},
		"dockerProxy":   map[string]any{"indexType": "HUB"},
	}
}

func groupBody(name string, members ...string) map[string]any {
	return map[string]any{
		"name": name, "online": true,
		"storage": map[string]any{"blobStoreName": "default", "strictContentTypeValidation": true},
		"group":   map[string]any{"memberNames": members},
		"docker":  map[string]any{"v1Enabled": false, "forceBasicAuth": false, "pathEnabled": true},
	}
}

// pull reads every layer of image ref, as a runtime does.
func pull(t *testing.T, image string, opts ...remote.Option) error {
	t.Helper()
	img, err := remote.Image(ref(t, image), opts...)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func TestAProxyRepositoryFetchesOnAMissAndServesItsStoreOnceTheUpstreamIsGone(t *testing.T) {
	t.Parallel()
	up, img := upstream(t)
	_, srv := startNexus(t, "", nil, nil, "DockerToken")
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/proxy", proxyBody(up.URL), http.StatusCreated)

	want, _ := img.Digest()
	// Both URL shapes: path-based routing, and the repository base path (whose image
	// names do not carry the repository).
	if d, err := remote.Head(ref(t, host(srv)+"/docker-hub/library/hello:1.0"), adminAuth); err != nil || d.Digest != want {
		t.Fatalf("path-based routing: %v, %v; want %s from the upstream", d, err, want)
	}
	if d, err := headAt(t, srv, "/repository/docker-hub/v2/library/hello/manifests/1.0"); err != nil || d.Digest != want {
		t.Fatalf("the repository base path: %v, %v; want %s from the upstream", d, err, want)
	}
	if err := pull(t, host(srv)+"/docker-hub/library/hello:1.0", adminAuth); err != nil {
		t.Fatalf("pull through the proxy: %v", err)
	}
	// Nothing is pushed to a proxy.
	if err := remote.Write(ref(t, host(srv)+"/docker-hub/library/pushed:1"), img, adminAuth); status(err) != http.StatusMethodNotAllowed {
		t.Errorf("push to a proxy repository: %v, want 405", err)
	}
	up.Close()
	if err := pull(t, host(srv)+"/docker-hub/library/hello:1.0", adminAuth); err != nil {
		t.Fatalf("pull from the proxy's store once the upstream is gone: %v", err)
	}
	if err := pull(t, host(srv)+"/docker-hub/library/other:1.0", adminAuth); err == nil {
		t.Error("an image the proxy never fetched was served with the upstream gone")
	}
}

// headAt asks for a manifest at path as admin and returns its descriptor.
func headAt(t *testing.T, srv *httptest.Server, path string) (*v1.Descriptor, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, srv.URL+path, nil)
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{resp.StatusCode}
	}
	h, err := v1.NewHash(resp.Header.Get("Docker-Content-Digest"))
	return &v1.Descriptor{Digest: h}, err
}

type httpError struct{ code int }

func (e *httpError) Error() string { return http.StatusText(e.code) }

func TestAGroupAnswersFromItsFirstMemberThatHasTheImageAndTakesNoPush(t *testing.T) {
	t.Parallel()
	up, fromUpstream := upstream(t)
	_, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, nil, "DockerToken")
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/proxy", proxyBody(up.URL), http.StatusCreated)
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/group", groupBody("docker-all", "my-docker", "docker-hub"), http.StatusCreated)

	// The hosted member's own hello:1.0 comes first; an image only upstream comes through
	// the proxy member.
	own, _ := random.Image(512, 1)
	if err := remote.Write(ref(t, host(srv)+"/my-docker/library/hello:1.0"), own, adminAuth); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, host(up)+"/library/only-upstream:2"), fromUpstream); err != nil {
		t.Fatal(err)
	}
	for image, want := range map[string]v1.Image{"library/hello:1.0": own, "library/only-upstream:2": fromUpstream} {
		d, err := remote.Head(ref(t, host(srv)+"/docker-all/"+image), adminAuth)
		wantDigest, _ := want.Digest()
		if err != nil || d.Digest != wantDigest {
			t.Errorf("%s through the group: %v, %v; want %s", image, d, err, wantDigest)
		}
	}
	if err := pull(t, host(srv)+"/docker-all/library/only-upstream:2", adminAuth); err != nil {
		t.Errorf("pull through the group: %v", err)
	}
	if _, err := remote.Head(ref(t, host(srv)+"/docker-all/library/nowhere:1"), adminAuth); err == nil {
		t.Error("an image no member has was found")
	}
	if err := remote.Write(ref(t, host(srv)+"/docker-all/library/pushed:1"), own, adminAuth); status(err) != http.StatusMethodNotAllowed {
		t.Errorf("push to a group: %v, want 405 (deploying to groups is a Pro feature)", err)
	}
}

func TestAnonymousPullsGoAsFarAsTheAnonymousUsersRoles(t *testing.T) {
	t.Parallel()
	up, _ := upstream(t)
	fake, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, nil, "DockerToken")
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/proxy", proxyBody(up.URL), http.StatusCreated)
	private, _ := random.Image(512, 1)
	if err := remote.Write(ref(t, host(srv)+"/my-docker/team/secret:1"), private, adminAuth); err != nil {
		t.Fatal(err)
	}
	anon := remote.WithAuth(authn.Anonymous)
	mirrored, hosted := host(srv)+"/docker-hub/library/hello:1.0", host(srv)+"/my-docker/team/secret:1"

	// Off: nothing without credentials.
	if err := pull(t, mirrored, anon); err == nil {
		t.Fatal("an anonymous pull went through with anonymous access off")
	}

	// On, the anonymous user holding only read on the proxy: the mirrored image comes, the
	// hosted one does not.
	rest(t, srv, http.MethodPut, "/service/rest/v1/security/anonymous", map[string]any{"enabled": true, "userId": "anonymous", "realmName": "NexusAuthorizingRealm"}, http.StatusOK)
	rest(t, srv, http.MethodPost, "/service/rest/v1/security/roles", map[string]any{"id": "mirror-read", "name": "mirror-read", "description": "read the proxy",
		"privileges": []string{"nx-repository-view-docker-docker-hub-read", "nx-repository-view-docker-docker-hub-browse"}, "roles": []string{}}, http.StatusOK)
	rest(t, srv, http.MethodPut, "/service/rest/v1/security/users/anonymous", map[string]any{"userId": "anonymous", "firstName": "Anonymous", "lastName": "User",
		"emailAddress": "anonymous@example.org", "status": "active", "source": "default", "roles": []string{"mirror-read"}}, http.StatusNoContent)
	if err := pull(t, mirrored, anon); err != nil {
		t.Errorf("anonymous pull of a mirrored image: %v", err)
	}
	if err := pull(t, hosted, anon); status(err) != http.StatusUnauthorized {
		t.Errorf("anonymous pull of a hosted private image: %v, want 401", err)
	}
	// containerd asks for the manifest straight away, without the token dance.
	if d, err := headNoAuth(t, srv, "/v2/docker-hub/library/hello/manifests/1.0"); err != nil {
		t.Errorf("a HEAD without credentials: %v, %v", d, err)
	}

	// The anonymous user as a new Nexus has it (nx-anonymous: read on every repository):
	// the hosted image is public too.
	rest(t, srv, http.MethodPut, "/service/rest/v1/security/users/anonymous", map[string]any{"userId": "anonymous", "firstName": "Anonymous", "lastName": "User",
		"emailAddress": "anonymous@example.org", "status": "active", "source": "default", "roles": []string{"nx-anonymous"}}, http.StatusNoContent)
	if err := pull(t, hosted, anon); err != nil {
		t.Errorf("anonymous pull with nx-anonymous: %v", err)
	}
	if on, user := fake.Anonymous(); !on || user != "anonymous" {
		t.Errorf("anonymous access %v as %q", on, user)
	}
}

func headNoAuth(t *testing.T, srv *httptest.Server, path string) (int, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, srv.URL+path, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, &httpError{resp.StatusCode}
	}
	return resp.StatusCode, nil
}

func TestProxyAndGroupRequestsAreCheckedAsNexusChecksThem(t *testing.T) {
	t.Parallel()
	fake, srv := startNexus(t, "", nil, nil)
	without := func(key string) map[string]any {
		b := proxyBody("https://registry-1.docker.io")
		delete(b, key)
		return b
	}
	for _, body := range []map[string]any{without("dockerProxy"), without("negativeCache"), without("httpClient"), without("proxy")} {
		rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/proxy", body, http.StatusBadRequest)
	}
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/group", groupBody("docker-all", "no-such-repo"), http.StatusBadRequest)
	pro := groupBody("docker-all", "my-docker")
	pro["group"].(map[string]any)["writableMember"] = "my-docker"
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/group", pro, http.StatusBadRequest)

	// The upstream password is write-only.
	withAuth := proxyBody("https://registry-1.docker.io")
	withAuth["httpClient"].(map[string]any)["authentication"] = map[string]any{"type": "username", "username": "hub-user", "password": "hub-secret"}
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/proxy", withAuth, http.StatusCreated)
	got, _ := json.Marshal(fake.Repository("docker-hub"))
	if strings.Contains(string(got), "hub-secret") || !strings.Contains(string(got), "hub-user") || !strings.Contains(string(got), `"type":"proxy"`) {
		t.Errorf("the proxy as a GET answers it: %s", got)
	}
	// Each type's resource finds repositories of its type only.
	rest(t, srv, http.MethodGet, "/service/rest/v1/repositories/docker/hosted/docker-hub", nil, http.StatusNotFound)
	rest(t, srv, http.MethodGet, "/service/rest/v1/repositories/docker/proxy/docker-hub", nil, http.StatusOK)
	rest(t, srv, http.MethodPut, "/service/rest/v1/security/anonymous", map[string]any{"enabled": true, "userId": "anonymous", "realmName": "NoSuchRealm"}, http.StatusBadRequest)
}

// status is the HTTP status a registry call failed with (0 for none).
func status(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}
