package nodeconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"path"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/regwire/regwire/api/v1alpha1"
)

// Paths of the CRI-O format, relative to /etc/containers (containers-registries.conf.d(5),
// containers-certs.d(5)). CRI-O, podman, skopeo and buildah read both.
const (
	// DropInDir holds registries.conf drop-ins, read in alphabetical order after
	// registries.conf; a [[registry]] with the same prefix in a later file wins.
	DropInDir = "registries.conf.d"
	// CertsDir holds one directory per registry host:port with *.crt CAs and
	// *.cert/*.key client pairs.
	CertsDir = "certs.d"
	// dropInPrefix starts the name of every drop-in regwire writes.
	dropInPrefix = "regwire-"
)

// registriesConf is a registries.conf v2 drop-in: [[registry]] tables.
type registriesConf struct {
	Registries []crioRegistry `toml:"registry"`
}

type crioRegistry struct {
	Prefix   string         `toml:"prefix"`
	Location string         `toml:"location"`
	Insecure bool           `toml:"insecure,omitempty"`
	Blocked  bool           `toml:"blocked,omitempty"`
	Mirrors  []crioEndpoint `toml:"mirror,omitempty"`
}

type crioEndpoint struct {
	Location string `toml:"location"`
	Insecure bool   `toml:"insecure,omitempty"`
}

// DropInName is the registries.conf.d file that holds mirror's registries.
func DropInName(mirror string) string {
	name := dropInPrefix + mirror
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(mirror))
		name = name[:189] + "-" + hex.EncodeToString(sum[:5])
	}
	return name + ".conf"
}

// crioEmitter writes registries.conf.d/regwire-<mirror>.conf and certs.d/<host>/ca.crt.
type crioEmitter struct{}

func (crioEmitter) supports(m *Mirror) *MirrorError {
	if _, p := endpoint(m); p != "" {
		if _, err := crioLocation(m, p); err != nil {
			return unsupported(m, "spec.endpoint", "%v", err)
		}
	}
	for i, u := range m.Spec.MirrorOf {
		if u.Host == v1alpha1.DefaultHost {
			return unsupported(m, "spec.mirrorOf[0].host", "CRI-O's registries.conf has no entry for every registry (_default is containerd's); list the upstream hosts instead, or set runtimes to [containerd]")
		}
		if u.Path != "" {
			if _, err := crioLocation(m, u.Path); err != nil {
				return unsupported(m, "spec.mirrorOf["+itoa(i)+"].path", "%v", err)
			}
		}
	}
	return nil
}

func (crioEmitter) emit(c *Config, m *Mirror, claims []claim) {
	var conf registriesConf
	server, own := endpoint(m)
	insecure := m.Spec.InsecureSkipVerify
	for _, cl := range claims {
		if !cl.upstream {
			loc, _ := crioLocation(m, own) // checked by supports
			conf.Registries = append(conf.Registries, crioRegistry{Prefix: cl.host, Location: loc, Insecure: insecure})
			continue
		}
		p := cmpOr(cl.path, own)
		loc, _ := crioLocation(m, p) // checked by supports
		conf.Registries = append(conf.Registries, crioRegistry{
			Prefix: cl.host, Location: cl.host,
			// A blocked registry is never contacted, its mirrors still are
			// (containers/image docker_client.go checks Blocked per pull source).
			Blocked: m.Spec.SkipFallback,
			Mirrors: []crioEndpoint{{Location: loc, Insecure: insecure}},
		})
	}
	data, err := toml.Marshal(conf)
	if err != nil { // typed structs of strings and bools always marshal
		panic(err)
	}
	c.add(m.Name, path.Join(DropInDir, DropInName(m.Name)), append(header(m.Name), data...))
	u, _ := url.Parse(server) // checked by check
	addTLSFiles(c, m, path.Join(CertsDir, u.Host))
}

// crioLocation is where containers/image finds a mirror: host[:port] and an optional
// namespace, requested as https://host/v2/<namespace>/<name>/... . A path can only be
// expressed when it is /v2/<namespace>, the shape of Nexus's path-based routing.
func crioLocation(m *Mirror, p string) (string, error) {
	server, _ := endpoint(m)
	u, _ := url.Parse(server) // checked by check
	if p == "" || p == "/v2" {
		return u.Host, nil
	}
	ns, ok := strings.CutPrefix(p, "/v2/")
	if !ok || ns == "" || strings.HasSuffix(ns, "/") {
		return "", errf("containers-registries.conf(5) names a mirror by host and namespace, which it requests at /v2/<namespace>; path %s cannot be expressed: serve the repository with path-based routing (/v2/<repository>) or set runtimes to [containerd]", p)
	}
	return u.Host + "/" + ns, nil
}
