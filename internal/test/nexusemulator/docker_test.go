package nexusemulator_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/test/nexusemulator"
)

const adminPassword = "admin-password"

var adminAuth = remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPassword})

// startNexus serves a fake Nexus with the docker hosted repository my-docker configured by
// docker (forceBasicAuth, pathEnabled) and storage (writePolicy, latestPolicy) fields.
func startNexus(t *testing.T, version string, docker, storage map[string]any, realms ...string) (*nexusemulator.Server, *httptest.Server) {
	t.Helper()
	fake := nexusemulator.New(adminPassword)
	if version != "" {
		fake.SetVersion(version)
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	if len(realms) > 0 {
		rest(t, srv, http.MethodPut, "/service/rest/v1/security/realms/active", append([]string{"NexusAuthenticatingRealm"}, realms...), http.StatusNoContent)
	}
	d := map[string]any{"v1Enabled": false, "forceBasicAuth": true}
	for k, v := range docker {
		d[k] = v
	}
	st := map[string]any{"blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "ALLOW"}
	for k, v := range storage {
		st[k] = v
	}
	rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/hosted", map[string]any{"name": "my-docker", "online": true, "storage": st, "docker": d}, http.StatusCreated)
	return fake, srv
}

func rest(t *testing.T, srv *httptest.Server, method, path string, body any, want int) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("admin", adminPassword)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != want {
		got, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, got, want)
	}
}

func host(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// answer is a response's status and headers.
type answer struct {
	StatusCode int
	Header     http.Header
}

// get sends an authenticated (when auth) request and returns the answer's status and headers.
func get(t *testing.T, srv *httptest.Server, method, url string, auth bool, header map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if auth {
		req.SetBasicAuth("admin", adminPassword)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return answer{resp.StatusCode, resp.Header}
}

func push(t *testing.T, reference string, opts ...remote.Option) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, reference), img, append([]remote.Option{adminAuth}, opts...)...); err != nil {
		t.Fatalf("push %s: %v", reference, err)
	}
	return img
}

func TestBothURLShapesServeTheSameRepository(t *testing.T) {
	t.Parallel()
	_, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, nil)
	img := push(t, host(srv)+"/my-docker/app:1")
	want, _ := img.Digest()

	// Path-based routing: the image name carries the repository.
	if got := get(t, srv, http.MethodHead, srv.URL+"/v2/my-docker/app/manifests/1", true, nil); got.StatusCode != http.StatusOK || got.Header.Get("Docker-Content-Digest") != want.String() {
		t.Errorf("path-based routing: %d %s, want 200 %s", got.StatusCode, got.Header.Get("Docker-Content-Digest"), want)
	}
	// The repository base path: the same image, its name without the repository.
	if got := get(t, srv, http.MethodHead, srv.URL+"/repository/my-docker/v2/app/manifests/1", true, nil); got.StatusCode != http.StatusOK || got.Header.Get("Docker-Content-Digest") != want.String() {
		t.Errorf("base path: %d %s, want 200 %s", got.StatusCode, got.Header.Get("Docker-Content-Digest"), want)
	}
	if got := get(t, srv, http.MethodHead, srv.URL+"/repository/my-docker/v2/my-docker/app/manifests/1", true, nil); got.StatusCode != http.StatusNotFound {
		t.Errorf("base path with the repository in the image name: %d, want 404 (that is another image)", got.StatusCode)
	}
	// A push through the base path lands in the same repository.
	img2 := push(t, host(srv)+"/other:2", basePath())
	want2, _ := img2.Digest()
	if got := get(t, srv, http.MethodHead, srv.URL+"/v2/my-docker/other/manifests/2", true, nil); got.StatusCode != http.StatusOK || got.Header.Get("Docker-Content-Digest") != want2.String() {
		t.Errorf("pushed through the base path, read with path-based routing: %d, want 200 %s", got.StatusCode, want2)
	}
}

// basePath sends the registry API to my-docker's base path, as containerd's override_path
// does: /v2/<rest> becomes /repository/my-docker/v2/<rest>.
func basePath() remote.Option {
	const prefix = "/repository/my-docker/v2"
	return remote.WithTransport(roundTripper(func(r *http.Request) (*http.Response, error) {
		if p := r.URL.Path; p == "/v2" || strings.HasPrefix(p, "/v2/") {
			r = r.Clone(r.Context())
			r.URL.Path = prefix + strings.TrimPrefix(p, "/v2")
		}
		return remote.DefaultTransport.RoundTrip(r)
	}))
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPathBasedRoutingNeedsPathEnabledOnNexus383(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, version string
		pathEnabled   bool
		want          int
	}{
		{"reaches a repository with pathEnabled on 3.84", "3.84.0", true, http.StatusOK},
		{"reaches no repository without pathEnabled", "3.84.0", false, http.StatusNotFound},
		{"reaches no repository on 3.80, which drops pathEnabled", "3.80.0", true, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, srv := startNexus(t, tc.version, map[string]any{"pathEnabled": tc.pathEnabled}, nil)
			push(t, host(srv)+"/app:1", basePath())
			if got := get(t, srv, http.MethodHead, srv.URL+"/v2/my-docker/app/manifests/1", true, nil); got.StatusCode != tc.want {
				t.Errorf("HEAD /v2/my-docker/app/manifests/1: %d, want %d", got.StatusCode, tc.want)
			}
			if got := get(t, srv, http.MethodHead, srv.URL+"/repository/my-docker/v2/app/manifests/1", true, nil); got.StatusCode != http.StatusOK {
				t.Errorf("the base path serves every version: %d", got.StatusCode)
			}
		})
	}
}

func TestTheChallengeIsTheOneNexusSends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, version, path string
		force               bool
		header              map[string]string
		want                string
	}{
		{"forceBasicAuth asks for Basic", "", "/v2/my-docker/app/manifests/1", true, nil,
			`BASIC realm="Sonatype Nexus Repository Manager"`},
		{"without forceBasicAuth the path-routed realm is /v2/token", "", "/v2/my-docker/app/manifests/1", false, nil,
			`Bearer realm="http://HOST/v2/token",service="http://HOST/v2/token"`},
		{"without forceBasicAuth the base path realm is under the repository", "", "/repository/my-docker/v2/app/manifests/1", false, nil,
			`Bearer realm="http://HOST/repository/my-docker/v2/token",service="http://HOST/repository/my-docker/v2/token"`},
		{"the realm follows the proxy's X-Forwarded-Proto", "", "/v2/my-docker/app/manifests/1", false,
			map[string]string{"X-Forwarded-Proto": "https"},
			`Bearer realm="https://HOST/v2/token",service="https://HOST/v2/token"`},
		{"3.84 keeps a forwarded port once", "3.84.0", "/v2/my-docker/app/manifests/1", false,
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "nexus.local:5001"},
			`Bearer realm="https://nexus.local:5001/v2/token",service="https://nexus.local:5001/v2/token"`},
		{"3.80 doubles a forwarded port (nexus-public#651)", "3.80.0", "/repository/my-docker/v2/app/manifests/1", false,
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "nexus.local:5001"},
			`Bearer realm="https://nexus.local:5001:5001/repository/my-docker/v2/token",service="https://nexus.local:5001:5001/repository/my-docker/v2/token"`},
		{"3.80 without X-Forwarded-Host keeps the Host header's port", "3.80.0", "/repository/my-docker/v2/app/manifests/1", false,
			map[string]string{"X-Forwarded-Proto": "https"},
			`Bearer realm="https://HOST/repository/my-docker/v2/token",service="https://HOST/repository/my-docker/v2/token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, srv := startNexus(t, tc.version, map[string]any{"pathEnabled": true, "forceBasicAuth": tc.force}, nil, "DockerToken")
			got := get(t, srv, http.MethodGet, srv.URL+tc.path, false, tc.header)
			want := strings.ReplaceAll(tc.want, "HOST", host(srv))
			if got.StatusCode != http.StatusUnauthorized || got.Header.Get("WWW-Authenticate") != want {
				t.Errorf("%d WWW-Authenticate: %s\nwant 401 %s", got.StatusCode, got.Header.Get("WWW-Authenticate"), want)
			}
		})
	}
}

func TestBearerTokensNeedTheDockerTokenRealm(t *testing.T) {
	t.Parallel()
	t.Run("with the realm active a push and a pull go through the token endpoint", func(t *testing.T) {
		t.Parallel()
		fake, srv := startNexus(t, "", map[string]any{"pathEnabled": true, "forceBasicAuth": false}, nil, "DockerToken")
		img := push(t, host(srv)+"/my-docker/app:1")
		want, _ := img.Digest()
		d, err := remote.Head(ref(t, host(srv)+"/my-docker/app:1"), adminAuth)
		if err != nil || d.Digest != want {
			t.Fatalf("pull: %v %v", d, err)
		}
		tokens := 0
		for _, r := range fake.Requests() {
			if strings.HasPrefix(r, "GET /v2/token") {
				tokens++
			}
		}
		if tokens == 0 {
			t.Errorf("no request for a token: %v", fake.Requests())
		}
	})
	t.Run("without the realm the token endpoint refuses", func(t *testing.T) {
		t.Parallel()
		_, srv := startNexus(t, "", map[string]any{"pathEnabled": true, "forceBasicAuth": false}, nil)
		img, _ := random.Image(64, 1)
		// The repository's base path challenges for a token, as its version check does.
		err := remote.Write(ref(t, host(srv)+"/app:1"), img, adminAuth, basePath())
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Fatalf("push without the DockerToken realm: %v, want UNAUTHORIZED", err)
		}
	})
	t.Run("wrong credentials get no token", func(t *testing.T) {
		t.Parallel()
		_, srv := startNexus(t, "", map[string]any{"pathEnabled": true, "forceBasicAuth": false}, nil, "DockerToken")
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/token?service=x&scope=repository:my-docker/app:pull", nil)
		req.SetBasicAuth("admin", "wrong")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token with a wrong password: %d, want 401", resp.StatusCode)
		}
	})
}

func TestWhatNexusLacks(t *testing.T) {
	t.Parallel()
	fake, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, nil)
	img := push(t, host(srv)+"/my-docker/a:1")
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()

	t.Run("a cross-repository mount starts an upload instead", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/my-docker/b/blobs/uploads/?mount="+layer.String()+"&from=my-docker/a", nil)
		req.SetBasicAuth("admin", adminPassword)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(resp.Header.Get("Location"), "/v2/my-docker/b/blobs/uploads/") {
			t.Errorf("mount: %d Location %q, want 202 and an upload under /v2/my-docker/b", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("the referrers API is not there", func(t *testing.T) {
		d, _ := img.Digest()
		if got := get(t, srv, http.MethodGet, srv.URL+"/v2/my-docker/a/referrers/"+d.String(), true, nil); got.StatusCode != http.StatusNotFound {
			t.Errorf("referrers: %d, want 404", got.StatusCode)
		}
	})
	t.Run("blobs are stored per repository", func(t *testing.T) {
		rest(t, srv, http.MethodPost, "/service/rest/v1/repositories/docker/hosted", map[string]any{"name": "other", "online": true,
			"storage": map[string]any{"blobStoreName": "default", "strictContentTypeValidation": true, "writePolicy": "ALLOW"},
			"docker":  map[string]any{"v1Enabled": false, "forceBasicAuth": true, "pathEnabled": true}}, http.StatusCreated)
		if got := get(t, srv, http.MethodHead, srv.URL+"/v2/other/a/blobs/"+layer.String(), true, nil); got.StatusCode != http.StatusNotFound {
			t.Errorf("a blob of my-docker in repository other: %d, want 404", got.StatusCode)
		}
		if got := get(t, srv, http.MethodHead, srv.URL+"/v2/my-docker/a/blobs/"+layer.String(), true, nil); got.StatusCode != http.StatusOK {
			t.Errorf("the blob in my-docker: %d, want 200", got.StatusCode)
		}
	})
	if reqs := strings.Join(fake.Requests(), "\n"); !strings.Contains(reqs, "mount=") {
		t.Errorf("the mount request was not seen:\n%s", reqs)
	}
}

func TestWritePolicies(t *testing.T) {
	t.Parallel()
	t.Run("AllowOnce refuses to move a tag", func(t *testing.T) {
		t.Parallel()
		_, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, map[string]any{"writePolicy": "ALLOW_ONCE"})
		push(t, host(srv)+"/my-docker/app:1")
		img, _ := random.Image(64, 1)
		err := remote.Write(ref(t, host(srv)+"/my-docker/app:1"), img, adminAuth)
		// nexus-public StorageTxImpl: "Repository does not allow updating assets".
		if err == nil || !strings.Contains(err.Error(), "Repository does not allow updating assets: my-docker") {
			t.Fatalf("moving tag 1: %v", err)
		}
		push(t, host(srv)+"/my-docker/app:2") // a new tag is a new asset
	})
	t.Run("AllowOnce refuses latest unless latestPolicy allows it", func(t *testing.T) {
		t.Parallel()
		for _, latestPolicy := range []bool{false, true} {
			_, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, map[string]any{"writePolicy": "ALLOW_ONCE", "latestPolicy": latestPolicy})
			push(t, host(srv)+"/my-docker/app:latest")
			img, _ := random.Image(64, 1)
			err := remote.Write(ref(t, host(srv)+"/my-docker/app:latest"), img, adminAuth)
			if latestPolicy && err != nil {
				t.Errorf("latestPolicy true: moving latest: %v", err)
			}
			if !latestPolicy && (err == nil || !strings.Contains(err.Error(), "does not allow updating assets")) {
				t.Errorf("latestPolicy false: moving latest: %v", err)
			}
		}
	})
	t.Run("Deny refuses every write", func(t *testing.T) {
		t.Parallel()
		_, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, map[string]any{"writePolicy": "DENY"})
		img, _ := random.Image(64, 1)
		err := remote.Write(ref(t, host(srv)+"/my-docker/app:1"), img, adminAuth)
		if err == nil || !strings.Contains(err.Error(), "Repository is read only: my-docker") {
			t.Fatalf("push to a DENY repository: %v", err)
		}
	})
}

func TestAnOCIIndexIsAccepted(t *testing.T) {
	t.Parallel()
	_, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, nil)
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, host(srv)+"/my-docker/multi:1"), idx, adminAuth); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(ref(t, host(srv)+"/multi:1"), adminAuth, basePath())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("index %s, want %s", d, want)
	}
}

func TestPullingAndPushingNeedTheRepositoryViewPrivileges(t *testing.T) {
	t.Parallel()
	fake, srv := startNexus(t, "", map[string]any{"pathEnabled": true}, nil)
	fake.AddUser("reader", "reader-password", "nexus:repository-view:docker:my-docker:browse,read")
	fake.AddUser("nobody", "nobody-password")
	push(t, host(srv)+"/my-docker/app:1")
	reader := remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-password"})
	if _, err := remote.Head(ref(t, host(srv)+"/my-docker/app:1"), reader); err != nil {
		t.Errorf("a pull with the read privilege: %v", err)
	}
	img, _ := random.Image(64, 1)
	if err := remote.Write(ref(t, host(srv)+"/my-docker/app:2"), img, reader); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("a push with only the read privilege: %v, want DENIED", err)
	}
	nobody := remote.WithAuth(&authn.Basic{Username: "nobody", Password: "nobody-password"})
	if _, err := remote.Head(ref(t, host(srv)+"/my-docker/app:1"), nobody); err == nil {
		t.Error("a pull without any privilege succeeded")
	}
}
