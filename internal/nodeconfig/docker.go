package nodeconfig

import (
	"net/url"
)

// dockerEmitter writes <host>/ca.crt for Docker Engine (/etc/docker/certs.d), which reads
// it on each connection: no daemon restart.
type dockerEmitter struct{}

func (dockerEmitter) supports(m *Mirror) *MirrorError {
	if len(m.Spec.MirrorOf) > 0 {
		return unsupported(m, "spec.mirrorOf", "Docker Engine sends only Docker Hub pulls to a mirror, through registry-mirrors in daemon.json, which regwire does not change; remove docker from runtimes for this mirror")
	}
	if len(m.Spec.FallbackEndpoints) > 0 {
		return unsupported(m, "spec.fallbackEndpoints", "Docker Engine reaches only the registry an image names; remove docker from runtimes for this mirror")
	}
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

func (dockerEmitter) emit(c *Config, m *Mirror, claims []claim) {
	for _, cl := range claims {
		addTLSFiles(c, m, cl.host)
	}
}
