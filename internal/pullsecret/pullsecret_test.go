package pullsecret_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/internal/pullsecret"
)

const password = "s3cr3t-Pa55"

func secret(typ corev1.SecretType, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "regwire-system", Name: "creds"}, Type: typ, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func dockerJSON(auths string) map[string]string {
	return map[string]string{corev1.DockerConfigJsonKey: `{"auths":{` + auths + `}}`}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	b64 := base64.StdEncoding.EncodeToString([]byte("admin:" + password))
	cases := []struct {
		name string
		src  *corev1.Secret
		err  string
	}{
		{"a basic-auth Secret becomes an entry for the host", secret(corev1.SecretTypeBasicAuth, map[string]string{"username": "admin", "password": password}), ""},
		{"a dockerconfigjson entry for the host is copied", secret(corev1.SecretTypeDockerConfigJson, dockerJSON(`"nexus.local":{"username":"admin","password":"`+password+`"}`)), ""},
		{"an auth-only entry written by docker login is decoded", secret(corev1.SecretTypeDockerConfigJson, dockerJSON(`"https://nexus.local":{"auth":"`+b64+`"}`)), ""},
		{"a basic-auth Secret without a password is refused", secret(corev1.SecretTypeBasicAuth, map[string]string{"username": "admin"}), `needs non-empty "username" and "password"`},
		{"a dockerconfigjson without the host is refused", secret(corev1.SecretTypeDockerConfigJson, dockerJSON(`"other.local":{"username":"a","password":"b"}`)), "has no entry for nexus.local"},
		{"an Opaque Secret is refused, naming the types that work", secret(corev1.SecretTypeOpaque, map[string]string{"password": password}), "use kubernetes.io/basic-auth or kubernetes.io/dockerconfigjson"},
		{"a broken docker config is refused", secret(corev1.SecretTypeDockerConfigJson, map[string]string{corev1.DockerConfigJsonKey: "{" + password}), "is not a docker config JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := pullsecret.Build("nexus.local", tc.src, "spec.credentialsSecretRef")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), password) {
					t.Fatalf("the error leaks the password: %v", err)
				}
				if !strings.Contains(err.Error(), "spec.credentialsSecretRef (Secret regwire-system/creds)") {
					t.Errorf("the error does not name the field and Secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
			}
			if err := json.Unmarshal(got, &cfg); err != nil {
				t.Fatal(err)
			}
			a, ok := cfg.Auths["nexus.local"]
			if !ok || len(cfg.Auths) != 1 || a.Username != "admin" || a.Password != password || a.Auth != b64 {
				t.Errorf("dockerconfigjson = %s", got)
			}
		})
	}
}

func TestServiceAccountEditsKeepOtherEntries(t *testing.T) {
	t.Parallel()
	sa := &corev1.ServiceAccount{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "theirs"}}}
	if !pullsecret.AddTo(sa, "ours") || pullsecret.AddTo(sa, "ours") {
		t.Error("AddTo must change once, then not again")
	}
	if !pullsecret.RemoveFrom(sa, "ours") || pullsecret.RemoveFrom(sa, "ours") {
		t.Error("RemoveFrom must change once, then not again")
	}
	if len(sa.ImagePullSecrets) != 1 || sa.ImagePullSecrets[0].Name != "theirs" {
		t.Errorf("other entries were touched: %v", sa.ImagePullSecrets)
	}
	if !pullsecret.Wants([]string{"*"}, "any") || !pullsecret.Wants([]string{"default"}, "default") || pullsecret.Wants([]string{"default"}, "builder") || pullsecret.Wants(nil, "default") {
		t.Error("Wants does not follow serviceAccounts")
	}
}

// FuzzBuild: any credentials Secret either builds a config with exactly one entry for the
// host or is refused; nothing panics and no error repeats the Secret's bytes.
func FuzzBuild(f *testing.F) {
	f.Add(`{"auths":{"nexus.local":{"auth":"YWRtaW46cGFzcw=="}}}`, "admin", "pass")
	f.Add(`{"auths":{"https://nexus.local/v1/":{"username":"a","password":"b"}}}`, "", "")
	f.Add(`{`, "a:b", "c")
	f.Fuzz(func(t *testing.T, cfg, user, pass string) {
		for _, src := range []*corev1.Secret{
			secret(corev1.SecretTypeDockerConfigJson, map[string]string{corev1.DockerConfigJsonKey: cfg}),
			secret(corev1.SecretTypeBasicAuth, map[string]string{"username": user, "password": pass}),
		} {
			out, err := pullsecret.Build("nexus.local", src, "spec.credentialsSecretRef")
			if err != nil {
				if len(pass) > 6 && strings.Contains(err.Error(), pass) {
					t.Fatalf("error leaks the password: %v", err)
				}
				continue
			}
			var parsed struct {
				Auths map[string]json.RawMessage `json:"auths"`
			}
			if json.Unmarshal(out, &parsed) != nil || len(parsed.Auths) != 1 || parsed.Auths["nexus.local"] == nil {
				t.Fatalf("Build produced %s", out)
			}
		}
	})
}

func TestCredentialsAreBoundToTheirHost(t *testing.T) {
	t.Parallel()
	const annotation = "regwire.dev/registry-host"
	basic := func(hosts string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "creds"}, Type: corev1.SecretTypeBasicAuth}
		if hosts != "" {
			s.Annotations = map[string]string{annotation: hosts}
		}
		return s
	}
	tests := []struct {
		name   string
		secret *corev1.Secret
		host   string
		want   string // "" when bound
	}{
		{name: "a basic-auth Secret annotated with the host is bound to it", secret: basic("ghcr.io"), host: "ghcr.io"},
		{name: "one of several hosts is enough", secret: basic("quay.io, registry.example:5000"), host: "registry.example:5000"},
		{name: "Docker Hub's names are one registry", secret: basic("index.docker.io"), host: "docker.io"},
		{name: "host names compare without case", secret: basic("GHCR.io"), host: "ghcr.io"},
		{name: "an unannotated basic-auth Secret is bound to nothing", secret: basic(""), host: "ghcr.io", want: "annotate it regwire.dev/registry-host=ghcr.io"},
		{name: "another host is refused", secret: basic("ghcr.io"), host: "evil.example", want: "its credentials are for ghcr.io (annotation regwire.dev/registry-host), not for evil.example"},
		{name: "a port makes another host", secret: basic("registry.example"), host: "registry.example:5000", want: "not for registry.example:5000"},
		{name: "a dockerconfigjson Secret is bound by its entries", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, host: "ghcr.io"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := pullsecret.BoundTo(tc.host, tc.secret, "spec.source.credentialsSecretRef", annotation)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("BoundTo(%q) = %v, want %q", tc.host, err, tc.want)
			}
		})
	}
}
