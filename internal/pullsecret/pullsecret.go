// Package pullsecret builds image pull secrets from a RegistryMirror's credentials and edits
// ServiceAccounts' imagePullSecrets. It never logs or returns credential material in errors.
package pullsecret

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// dockerConfig is the .dockerconfigjson format kubelet reads.
type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// Build returns the .dockerconfigjson for host from a credentials Secret of type
// kubernetes.io/basic-auth (username and password) or kubernetes.io/dockerconfigjson (its
// entry for host). field names the reference in errors, e.g. spec.credentialsSecretRef.
func Build(host string, src *corev1.Secret, field string) ([]byte, error) {
	user, pass, err := Credentials(host, src, field)
	if err != nil {
		return nil, err
	}
	auth := dockerAuth{Username: user, Password: pass, Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
	return json.Marshal(dockerConfig{Auths: map[string]dockerAuth{host: auth}})
}

// Credentials returns the username and password for host in a kubernetes.io/basic-auth or
// kubernetes.io/dockerconfigjson Secret. field names the reference in errors.
func Credentials(host string, src *corev1.Secret, field string) (string, string, error) {
	ref := fmt.Sprintf("%s (Secret %s/%s)", field, src.Namespace, src.Name)
	var auth dockerAuth
	switch src.Type {
	case corev1.SecretTypeBasicAuth:
		user, pass := string(src.Data[corev1.BasicAuthUsernameKey]), string(src.Data[corev1.BasicAuthPasswordKey])
		if user == "" || pass == "" {
			return "", "", fmt.Errorf("%s: a kubernetes.io/basic-auth Secret needs non-empty %q and %q keys", ref, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
		}
		if strings.Contains(user, ":") {
			return "", "", fmt.Errorf("%s: the username must not contain ':'", ref)
		}
		auth = dockerAuth{Username: user, Password: pass}
	case corev1.SecretTypeDockerConfigJson:
		var cfg dockerConfig
		if err := json.Unmarshal(src.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return "", "", fmt.Errorf("%s: key %q is not a docker config JSON", ref, corev1.DockerConfigJsonKey)
		}
		a, ok := lookup(cfg.Auths, host)
		if !ok {
			return "", "", fmt.Errorf("%s: %q has no entry for %s", ref, corev1.DockerConfigJsonKey, host)
		}
		if a.Auth != "" && (a.Username == "" || a.Password == "") {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			user, pass, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return "", "", fmt.Errorf("%s: the entry for %s has an auth value that is not base64 of user:password", ref, host)
			}
			a.Username, a.Password = user, pass
		}
		if a.Username == "" || a.Password == "" {
			return "", "", fmt.Errorf("%s: the entry for %s has no username and password", ref, host)
		}
		auth = dockerAuth{Username: a.Username, Password: a.Password}
	default:
		return "", "", fmt.Errorf("%s: type %q is not supported; use kubernetes.io/basic-auth or kubernetes.io/dockerconfigjson", ref, src.Type)
	}
	return auth.Username, auth.Password, nil
}

// BoundTo checks that src's credentials are for host: a dockerconfigjson Secret by the
// entry Credentials takes for host; a basic-auth Secret by its annotation (the hosts, comma
// separated). field names the reference in errors.
func BoundTo(host string, src *corev1.Secret, field, annotation string) error {
	if src.Type != corev1.SecretTypeBasicAuth {
		return nil
	}
	named := src.Annotations[annotation]
	for h := range strings.SplitSeq(named, ",") {
		if SameRegistry(strings.TrimSpace(h), host) {
			return nil
		}
	}
	if named == "" {
		return fmt.Errorf("%s (Secret %s/%s): a kubernetes.io/basic-auth Secret names no registry host; annotate it %s=%s to send its credentials to %s",
			field, src.Namespace, src.Name, annotation, host, host)
	}
	return fmt.Errorf("%s (Secret %s/%s): its credentials are for %s (annotation %s), not for %s",
		field, src.Namespace, src.Name, named, annotation, host)
}

// SameRegistry compares registry hosts, Docker Hub's several names as one.
func SameRegistry(a, b string) bool {
	hub := func(h string) string {
		switch h = strings.ToLower(h); h {
		case "index.docker.io", "registry-1.docker.io": // go-containerregistry's and the API's
			return "docker.io"
		default:
			return h
		}
	}
	return a != "" && hub(a) == hub(b)
}

// lookup finds host in a docker config, also under the https:// prefixed spellings docker
// login writes.
func lookup(auths map[string]dockerAuth, host string) (dockerAuth, bool) {
	for _, k := range []string{host, "https://" + host, "https://" + host + "/v2/", "https://" + host + "/v1/"} {
		if a, ok := auths[k]; ok {
			return a, true
		}
	}
	return dockerAuth{}, false
}

// AddTo adds a reference to the pull secret name to sa, keeping every other entry; it
// reports whether sa changed.
func AddTo(sa *corev1.ServiceAccount, name string) bool {
	if slices.ContainsFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name }) {
		return false
	}
	sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	return true
}

// RemoveFrom removes the reference to name from sa, keeping every other entry; it reports
// whether sa changed.
func RemoveFrom(sa *corev1.ServiceAccount, name string) bool {
	n := len(sa.ImagePullSecrets)
	sa.ImagePullSecrets = slices.DeleteFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool { return r.Name == name })
	return len(sa.ImagePullSecrets) != n
}

// Wants reports whether the ServiceAccount named sa should reference the pull secret,
// given spec.pullSecrets.serviceAccounts ("*" alone: all of them).
func Wants(serviceAccounts []string, sa string) bool {
	return slices.Contains(serviceAccounts, "*") || slices.Contains(serviceAccounts, sa)
}
