package nodeconfig

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"strconv"
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

func (crioEmitter) notes(m *Mirror) []Note {
	if !fallsBack(m) {
		return nil
	}
	return []Note{{Mirror: m.Name, Field: "spec.dialTimeout", Text: "CRI-O takes no connect timeout per registry: an endpoint that does not answer holds a pull for CRI-O's own connect timeout before the next one or the upstream"}}
}

func (crioEmitter) mirrorsUpstreams() bool { return true }

func (crioEmitter) supports(m *Mirror) *MirrorError {
	for i, ep := range endpoints(m) {
		if ep.path == "" {
			continue
		}
		if _, err := crioLocation(ep, ep.path); err != nil {
			field := "spec.endpoint"
			if i > 0 {
				field = "spec.fallbackEndpoints[" + strconv.Itoa(i-1) + "]"
			}
			return unsupported(m, field, "%v", err)
		}
	}
	for i, u := range m.Spec.MirrorOf {
		if u.Host == v1alpha1.DefaultHost {
			return unsupported(m, "spec.mirrorOf["+strconv.Itoa(i)+"].host", "CRI-O's registries.conf has no entry for every registry (_default is containerd's); list the upstream hosts instead, or set runtimes to [containerd]")
		}
		if u.Path != "" {
			if _, err := crioLocation(endpoints(m)[0], u.Path); err != nil {
				return unsupported(m, "spec.mirrorOf["+strconv.Itoa(i)+"].path", "%v", err)
			}
		}
	}
	return nil
}

func (crioEmitter) emit(c *Config, m *Mirror, claims []claim) {
	var conf registriesConf
	insecure := m.Spec.InsecureSkipVerify
	// locations of the mirror's endpoints in order, under path (or each one's own).
	locations := func(path string) []crioEndpoint {
		var out []crioEndpoint
		for _, ep := range endpoints(m) {
			loc, _ := crioLocation(ep, cmp.Or(path, ep.path)) // checked by supports
			out = append(out, crioEndpoint{Location: loc, Insecure: insecure})
		}
		return out
	}
	for _, cl := range claims {
		if !cl.upstream {
			// containers/image tries the mirrors in order, then the location: the last
			// endpoint is the location, so nothing else is contacted.
			locs := locations("")
			last := locs[len(locs)-1]
			conf.Registries = append(conf.Registries, crioRegistry{Prefix: cl.host, Location: last.Location, Insecure: insecure, Mirrors: locs[:len(locs)-1]})
			continue
		}
		conf.Registries = append(conf.Registries, crioRegistry{
			Prefix: cl.host, Location: cl.host,
			// A blocked registry is never contacted, its mirrors still are
			// (containers/image docker_client.go checks Blocked per pull source).
			Blocked: m.Spec.SkipFallback,
			Mirrors: locations(cl.path),
		})
	}
	data, err := toml.Marshal(conf)
	if err != nil { // typed structs of strings and bools always marshal
		panic(err)
	}
	c.add(m.Name, path.Join(DropInDir, DropInName(m.Name)), append(header(m.Name), data...))
	for _, ep := range endpoints(m) {
		u, _ := url.Parse(ep.url) // checked by check
		addTLSFiles(c, m, path.Join(CertsDir, u.Host))
	}
}

// crioLocation is where containers/image finds an endpoint serving path p: host[:port]
// and an optional namespace, requested as https://host/v2/<namespace>/<name>/... . A path
// can only be expressed when it is /v2/<namespace>, the shape of Nexus's path-based
// routing.
func crioLocation(ep cleanEndpoint, p string) (string, error) {
	u, _ := url.Parse(ep.url) // checked by check
	if p == "" || p == "/v2" {
		return u.Host, nil
	}
	ns, ok := strings.CutPrefix(p, "/v2/")
	if !ok || ns == "" || strings.HasSuffix(ns, "/") {
		return "", fmt.Errorf("containers-registries.conf(5) names a mirror by host and namespace, which it requests at /v2/<namespace>; path %s cannot be expressed: serve the repository with path-based routing (/v2/<repository>) or set runtimes to [containerd]", p)
	}
	return u.Host + "/" + ns, nil
}
