package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// AnonymousPullRefused says why the mirror refuses a pull of one of upstream's images from
// a client without credentials, or "" when such a pull gets past authentication (200, 404
// or any other answer than 401 and 403). That is how containerd and CRI-O reach a mirror
// of another host: they send a pull secret's credentials only to the registry the secret
// names (kubelet passes it as the CRI ServerAddress), never to the mirror.
//
// It asks the way a runtime does: HEAD of a manifest under the upstream's path on the
// mirror (containerd's override_path; /v2 when there is none), and on a Bearer challenge
// an anonymous token from the realm, then the HEAD again with it. The image need not
// exist: only authentication is in question.
func (p Prober) AnonymousPullRefused(ctx context.Context, m nodeconfig.Mirror, upstream v1alpha1.UpstreamMirror) string {
	client, err := p.client(m)
	if err != nil {
		return ""
	}
	base, err := url.Parse(m.Spec.Endpoint)
	if m.Spec.Endpoint == "" || err != nil {
		base = &url.URL{Scheme: "https", Host: string(m.Spec.Host)}
	}
	root := strings.TrimSuffix(base.Path, "/")
	if upstream.Path != "" {
		root = strings.TrimSuffix(upstream.Path, "/")
	}
	if root == "" {
		root = "/v2"
	}
	repo := "regwire/anonymous-pull-probe"
	if upstream.Host == "docker.io" {
		repo = "library/regwire-anonymous-pull-probe"
	}
	target := *base
	target.Path, target.RawPath = root+"/"+repo+"/manifests/latest", ""
	resp, err := head(ctx, client, target.String(), "")
	if err != nil {
		return "" // unreachable is the probe's to report
	}
	switch {
	case resp.code == http.StatusForbidden:
		return fmt.Sprintf("HEAD %s answers %s to a client without credentials", target.String(), resp.status)
	case resp.code != http.StatusUnauthorized:
		return ""
	}
	challenge := resp.challenge
	scheme, params := parseChallenge(challenge)
	if !strings.EqualFold(scheme, "Bearer") || params["realm"] == "" {
		return fmt.Sprintf("HEAD %s answers %s (%s) to a client without credentials", target.String(), resp.status, challenge)
	}
	token, status, err := anonymousToken(ctx, client, params["realm"], params["service"], "repository:"+repo+":pull")
	switch {
	case err != nil:
		return ""
	case token == "":
		return fmt.Sprintf("its token endpoint %s answers %s to a client without credentials", params["realm"], status)
	}
	again, err := head(ctx, client, target.String(), token)
	if err != nil || (again.code != http.StatusUnauthorized && again.code != http.StatusForbidden) {
		return ""
	}
	return fmt.Sprintf("HEAD %s answers %s with an anonymous token", target.String(), again.status)
}

// answer is what a HEAD got back.
type answer struct {
	code              int
	status, challenge string
}

func head(ctx context.Context, client *http.Client, u, token string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	_ = resp.Body.Close()
	return answer{code: resp.StatusCode, status: resp.Status, challenge: resp.Header.Get("WWW-Authenticate")}, nil
}

// anonymousToken asks realm for a token without credentials; "" and the status when it
// gives none.
func anonymousToken(ctx context.Context, client *http.Client, realm, service, scope string) (string, string, error) {
	u, err := url.Parse(realm)
	if err != nil {
		return "", "", err
	}
	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", resp.Status, nil
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", resp.Status, nil
	}
	if body.Token != "" {
		return body.Token, resp.Status, nil
	}
	return body.AccessToken, resp.Status, nil
}

// parseChallenge splits a WWW-Authenticate value such as
// Bearer realm="https://r/token",service="r" into its scheme and parameters.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				val, rest = after[1:], ""
			} else {
				val, rest = after[1:1+end], after[2+end:]
			}
		} else {
			val, rest, _ = strings.Cut(after, ",")
		}
		params[strings.ToLower(strings.TrimSpace(key))] = val
	}
	return scheme, params
}
