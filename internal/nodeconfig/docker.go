package nodeconfig

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/regwire/regwire/api/v1alpha1"
)

// dockerEmitter writes <host>/ca.crt for Docker Engine (/etc/docker/certs.d), which reads
// it on each connection: no daemon restart.
type dockerEmitter struct{}

func (dockerEmitter) supports(m *Mirror) *MirrorError {
	if m.Spec.InsecureSkipVerify {
		return unsupported(m, "spec.insecureSkipVerify", "Docker Engine skips TLS verification only for insecure-registries in daemon.json, which regwire does not change; give the CA instead")
	}
	if m.Spec.Endpoint != "" {
		server, p := endpoint(m)
		u, _ := url.Parse(server) // checked by check
		if p != "" || u.Host != string(m.Spec.Host) {
			return unsupported(m, "spec.endpoint", "Docker Engine reaches the registry an image names at https://<host>/v2; endpoint %s cannot be expressed: remove docker from runtimes for this mirror", m.Spec.Endpoint)
		}
	}
	return nil
}

// notes: Docker Engine trusts the mirror's own host (certs.d) and takes nothing else of
// it; what it does instead is said per node.
func (dockerEmitter) notes(m *Mirror) []Note {
	var out []Note
	if len(m.Spec.MirrorOf) > 0 {
		hosts := make([]string, 0, len(m.Spec.MirrorOf))
		for _, u := range m.Spec.MirrorOf {
			if u.Host == v1alpha1.DefaultHost {
				hosts = append(hosts, "every other registry")
				continue
			}
			hosts = append(hosts, string(u.Host))
		}
		out = append(out, Note{Mirror: m.Name, Field: "spec.mirrorOf", Text: fmt.Sprintf(
			"Docker Engine sends only Docker Hub pulls to a mirror, through registry-mirrors in daemon.json, which regwire does not change: pulls of %s go to those registries themselves; %s is trusted",
			strings.Join(hosts, ", "), m.Spec.Host)})
	}
	if len(m.Spec.FallbackEndpoints) > 0 {
		out = append(out, Note{Mirror: m.Name, Field: "spec.fallbackEndpoints", Text: fmt.Sprintf(
			"Docker Engine reaches only the registry an image names: pulls of %s use https://%s alone", m.Spec.Host, m.Spec.Host)})
	}
	return out
}

func (dockerEmitter) mirrorsUpstreams() bool { return false }

func (dockerEmitter) emit(c *Config, m *Mirror, claims []claim) {
	for _, cl := range claims {
		addTLSFiles(c, m, cl.host)
	}
}
