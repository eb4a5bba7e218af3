// Package nodeconfig renders what one node needs from the RegistryMirrors that select it:
// containerd registry host files (<config_path>/<host>/hosts.toml and ca.crt) and the
// /etc/hosts entries for hostAliases. It is pure: no I/O, no clocks, deterministic output.
//
// The format is containerd's hosts.toml (docs/hosts.md in containerd); tests load every
// rendered tree with containerd's own core/remotes/docker/config parser.
package nodeconfig

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/cabundle"
)

// File names inside a host directory.
const (
	HostsFile = "hosts.toml"
	CAFile    = "ca.crt"
	// ClientCertFile and ClientKeyFile are the client certificate and its key, the names
	// containerd's hosts.toml points at and the *.cert/*.key pair the certs.d layouts of
	// Docker and containers/image read. The key is written with mode 0600.
	ClientCertFile = "client.cert"
	ClientKeyFile  = "client.key"
)

// dockerHubHost is where containerd sends docker.io requests.
const dockerHubHost = "registry-1.docker.io"

// Mirror is one RegistryMirror as a node sees it, with its CA already resolved.
type Mirror struct {
	// Name of the RegistryMirror.
	Name string
	// Created orders mirrors that claim the same host: the older one wins.
	Created time.Time
	// Spec is the RegistryMirror's spec.
	Spec v1alpha1.RegistryMirrorSpec
	// CA is the PEM CA bundle (from caBundle or caFrom); empty means system roots.
	CA []byte
	// ClientCert and ClientKey are the PEM client certificate and key for mutual TLS;
	// empty when the registry needs none.
	ClientCert, ClientKey []byte
}

// Config is everything one node needs in one runtime's format.
type Config struct {
	// Runtime is the format of Files.
	Runtime v1alpha1.ContainerRuntime
	// Files maps slash-separated paths relative to the runtime's root (containerd's
	// config_path, /etc/containers for CRI-O, /etc/docker/certs.d for Docker) to contents.
	Files map[string][]byte
	// Owners maps each host a mirror claims to the RegistryMirror that has it.
	Owners map[string]string
	// HostsEntries are the /etc/hosts lines, in a stable order.
	HostsEntries []HostsEntry
	// Conflicts lists hosts (or files) claimed by more than one mirror, for the losers.
	Conflicts []Conflict
	// Errors lists mirrors that could not be rendered; their files are left out, so the
	// agent keeps the last good ones.
	Errors []MirrorError
	// Notes say what of a mirror the format leaves out while the rest renders.
	Notes []Note

	// fileOwner maps each path of Files to the RegistryMirror it is for.
	fileOwner map[string]string
}

// Note is a part of a mirror a runtime's format cannot express, and what the runtime does
// instead; the rest of the mirror is applied.
type Note struct {
	Mirror, Field, Text string
}

// HostsEntry is one /etc/hosts line.
type HostsEntry struct {
	IP        string
	Hostnames []string
	// Mirror that asked for it.
	Mirror string
}

// Conflict says that Mirror wanted host directory Dir but Winner has it.
type Conflict struct {
	Mirror, Dir, Winner string
}

func (c Conflict) String() string {
	return fmt.Sprintf("host %s is configured by RegistryMirror %s", c.Dir, c.Winner)
}

// MirrorError is a RegistryMirror the node refuses to render, with the field at fault.
type MirrorError struct {
	Mirror string
	Field  string
	Err    error
	// Reason is ApplyFailed for unsafe input, RuntimeUnsupported for what the runtime's
	// format cannot express.
	Reason v1alpha1.ConditionReason
}

func (e MirrorError) Error() string {
	return fmt.Sprintf("RegistryMirror %s: %s: %v", e.Mirror, e.Field, e.Err)
}

// hostsFile is containerd's hosts.toml: [host."URL"] tables are tried first, in file
// order; the top-level table configures server, tried last.
type hostsFile struct {
	Server string
	hostEntry
	// Hosts are the [host."URL"] tables in order. The host table is always written, empty
	// when there are no entries: containerd 1.6 refuses a hosts.toml without one ("invalid
	// `host` tree", core/remotes/docker/config getSortedHosts) and falls back to the
	// directory's *.crt files, losing override_path, capabilities and skip_verify.
	Hosts []namedHost
}

type namedHost struct {
	URL string
	hostEntry
}

// marshal writes the file with the host tables in order (a TOML map would sort them).
func (hf hostsFile) marshal() []byte {
	top, err := toml.Marshal(struct {
		Server string `toml:"server,omitempty"`
		hostEntry
	}{hf.Server, hf.hostEntry})
	if err != nil { // typed structs of strings and bools always marshal
		panic(err)
	}
	var b bytes.Buffer
	b.Write(top)
	if len(top) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("[host]\n")
	for i, h := range hf.Hosts {
		e, err := toml.Marshal(h.hostEntry)
		if err != nil {
			panic(err)
		}
		if i > 0 {
			b.WriteString("\n")
		}
		// URLs are checked: no quote or control character can end the literal string.
		fmt.Fprintf(&b, "[host.'%s']\n%s", h.URL, e)
	}
	return b.Bytes()
}

type hostEntry struct {
	Capabilities []string    `toml:"capabilities,omitempty"`
	CA           string      `toml:"ca,omitempty"`
	Client       [][2]string `toml:"client,omitempty"`
	SkipVerify   bool        `toml:"skip_verify,omitempty"`
	OverridePath bool        `toml:"override_path,omitempty"`
	// DialTimeout bounds the TCP connect to the host (containerd 2.1 and later; earlier
	// versions ignore the key). Only hosts with another after them have one: containerd
	// tries the hosts in order for each request of a pull.
	DialTimeout string `toml:"dial_timeout,omitempty"`
}

// fallsBack says whether a pull that cannot reach the mirror's endpoint has somewhere else
// to go: a fallback endpoint, or an upstream of mirrorOf.
func fallsBack(m *Mirror) bool {
	return len(m.Spec.FallbackEndpoints) > 0 || (len(m.Spec.MirrorOf) > 0 && !m.Spec.SkipFallback)
}

// FallsBack is fallsBack for a published spec.
func FallsBack(spec v1alpha1.RegistryMirrorSpec) bool { return fallsBack(&Mirror{Spec: spec}) }

// DefaultDialTimeout is a mirror's spec.dialTimeout when it sets none.
const DefaultDialTimeout = 200 * time.Millisecond

// DialTimeout is the mirror's connect timeout per endpoint.
func DialTimeout(spec v1alpha1.RegistryMirrorSpec) time.Duration {
	if spec.DialTimeout != nil && spec.DialTimeout.Duration > 0 {
		return spec.DialTimeout.Duration
	}
	return DefaultDialTimeout
}

// claim is a mirror's wish to own one host.
type claim struct {
	mirror *Mirror
	host   string
	// upstream is true for mirrorOf entries; a registry's own host beats an upstream claim.
	upstream bool
	path     string
}

// Render computes the node configuration for mirrors in containerd's format.
func Render(mirrors []Mirror) *Config { return RenderFor(v1alpha1.RuntimeContainerd, mirrors) }

// RenderFor computes the node configuration for mirrors in rt's format. Mirrors with
// unsafe input, or asking for what rt cannot express, are reported in Config.Errors and
// left out; the rest render. RenderFor never fails as a whole.
func RenderFor(rt v1alpha1.ContainerRuntime, mirrors []Mirror) *Config {
	c := &Config{Runtime: rt, Files: map[string][]byte{}, Owners: map[string]string{}, fileOwner: map[string]string{}}
	sorted := make([]*Mirror, 0, len(mirrors))
	for i := range mirrors {
		sorted = append(sorted, &mirrors[i])
	}
	slices.SortFunc(sorted, func(a, b *Mirror) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Name, b.Name))
	})
	em := emitterFor(rt)

	var claims []claim
	for _, m := range sorted {
		if err := check(m); err != nil {
			c.Errors = append(c.Errors, *err)
			continue
		}
		if err := em.supports(m); err != nil {
			c.Errors = append(c.Errors, *err)
			continue
		}
		c.Notes = append(c.Notes, em.notes(m)...)
		claims = append(claims, claim{mirror: m, host: string(m.Spec.Host)})
		for _, u := range m.Spec.MirrorOf {
			if em.mirrorsUpstreams() {
				claims = append(claims, claim{mirror: m, host: string(u.Host), upstream: true, path: u.Path})
			}
		}
		for _, a := range m.Spec.HostAliases {
			names := make([]string, 0, len(a.Hostnames))
			for _, h := range a.Hostnames {
				names = append(names, string(h))
			}
			c.HostsEntries = append(c.HostsEntries, HostsEntry{IP: a.IP, Hostnames: names, Mirror: m.Name})
		}
	}

	// Own hosts first, then upstream claims; within each, the oldest mirror first.
	sort.SliceStable(claims, func(i, j int) bool { return !claims[i].upstream && claims[j].upstream })
	won := map[*Mirror][]claim{}
	var order []*Mirror
	for _, cl := range claims {
		if owner, taken := c.Owners[cl.host]; taken {
			c.Conflicts = append(c.Conflicts, Conflict{Mirror: cl.mirror.Name, Dir: cl.host, Winner: owner})
			continue
		}
		c.Owners[cl.host] = cl.mirror.Name
		if won[cl.mirror] == nil {
			order = append(order, cl.mirror)
		}
		won[cl.mirror] = append(won[cl.mirror], cl)
	}
	slices.SortFunc(order, func(a, b *Mirror) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Name, b.Name))
	})
	for _, m := range order {
		em.emit(c, m, won[m])
	}
	return c
}

// add puts a file of mirror into c. A path another mirror already has keeps its owner:
// with the same content the mirrors share it; otherwise the later mirror has a conflict.
func (c *Config) add(mirror, p string, data []byte) {
	if owner, ok := c.fileOwner[p]; ok && owner != mirror {
		if !bytes.Equal(c.Files[p], data) {
			c.Conflicts = append(c.Conflicts, Conflict{Mirror: mirror, Dir: path.Dir(p), Winner: owner})
		}
		return
	}
	c.Files[p] = data
	c.fileOwner[p] = mirror
}

// emitter writes claims in one runtime's format.
type emitter interface {
	// supports refuses a mirror the format cannot express.
	supports(m *Mirror) *MirrorError
	// emit adds the files for the claims m won.
	emit(c *Config, m *Mirror, claims []claim)
	// notes say what of a supported mirror the format leaves out.
	notes(m *Mirror) []Note
	// mirrorsUpstreams says whether the format sends mirrorOf upstreams' pulls to a mirror.
	mirrorsUpstreams() bool
}

func emitterFor(rt v1alpha1.ContainerRuntime) emitter {
	switch rt {
	case v1alpha1.RuntimeCRIO:
		return crioEmitter{}
	case v1alpha1.RuntimeDocker:
		return dockerEmitter{}
	}
	return containerdEmitter{}
}

// unsupported is a MirrorError for what a runtime's format cannot express.
func unsupported(m *Mirror, field, format string, args ...any) *MirrorError {
	return &MirrorError{Mirror: m.Name, Field: field, Err: fmt.Errorf(format, args...), Reason: v1alpha1.ReasonRuntimeUnsupported}
}

// containerdEmitter writes <host>/hosts.toml and <host>/ca.crt (containerd's hosts.md).
type containerdEmitter struct{}

func (containerdEmitter) supports(*Mirror) *MirrorError { return nil }

func (containerdEmitter) notes(*Mirror) []Note { return nil }

func (containerdEmitter) mirrorsUpstreams() bool { return true }

func (containerdEmitter) emit(c *Config, m *Mirror, claims []claim) {
	for _, cl := range claims {
		var hf hostsFile
		if cl.upstream {
			hf = upstreamHostsFile(cl)
		} else {
			hf = ownHostsFile(cl.mirror)
		}
		c.add(m.Name, path.Join(cl.host, HostsFile), append(header(m.Name), hf.marshal()...))
		addTLSFiles(c, m, cl.host)
	}
}

func header(mirror string) []byte {
	return []byte("# Written by regwire for RegistryMirror " + mirror + ". Local changes are overwritten.\n")
}

// hostEntries are the mirror's endpoints in priority order, as host entries, with path
// (a mirrorOf path) in place of each endpoint's own when it is set.
func hostEntries(m *Mirror, path string) []namedHost {
	var out []namedHost
	for _, ep := range endpoints(m) {
		server, p := ep.url, ep.path
		if path != "" {
			u, _ := url.Parse(server) // checked by check
			u.Path = path
			server, p = u.String(), path
		}
		e := entry(m)
		e.OverridePath = p != ""
		e.DialTimeout = DialTimeout(m.Spec).String()
		out = append(out, namedHost{URL: server, hostEntry: e})
	}
	return out
}

// asServer makes the last host the file's server: no other host is tried after it, so it
// keeps the runtime's own connect timeout (a dial timeout only moves a pull on sooner).
func asServer(hosts []namedHost) hostsFile {
	last := hosts[len(hosts)-1]
	last.DialTimeout = ""
	return hostsFile{Server: last.URL, hostEntry: last.hostEntry, Hosts: hosts[:len(hosts)-1]}
}

// ownHostsFile configures a registry's own host: its endpoints in order, the last as the
// server, so that nothing but them is contacted.
func ownHostsFile(m *Mirror) hostsFile { return asServer(hostEntries(m, "")) }

// upstreamHostsFile sends an upstream's pulls to the mirror's endpoints first and to the
// upstream itself as the fallback.
func upstreamHostsFile(cl claim) hostsFile {
	hosts := hostEntries(cl.mirror, cl.path)
	if cl.mirror.Spec.SkipFallback {
		// Only the mirror: containerd appends the server as the last host to try and fills
		// an empty one with the upstream (ConfigureHosts), so the mirror's last endpoint
		// must be the server itself for the upstream never to be contacted.
		return asServer(hosts)
	}
	if cl.host == string(v1alpha1.DefaultHost) {
		// No server: containerd falls back to the registry the image names.
		return hostsFile{Hosts: hosts}
	}
	upstream := "https://" + cl.host
	if cl.host == "docker.io" {
		upstream = "https://" + dockerHubHost
	}
	return hostsFile{Server: upstream, Hosts: hosts}
}

// addTLSFiles adds the mirror's CA and client pair to dir.
func addTLSFiles(c *Config, m *Mirror, dir string) {
	if usesCA(m) {
		c.add(m.Name, path.Join(dir, CAFile), normalizePEM(m.CA))
	}
	if usesClientCert(m) {
		c.add(m.Name, path.Join(dir, ClientCertFile), normalizePEM(m.ClientCert))
		c.add(m.Name, path.Join(dir, ClientKeyFile), normalizePEM(m.ClientKey))
	}
}

// usesClientCert reports whether the mirror presents a client certificate.
func usesClientCert(m *Mirror) bool { return len(m.ClientCert) > 0 && !plainHTTP(m) }

// plainHTTP reports a mirror reached over http://. TLS settings on such an endpoint make
// containerd try HTTPS first and fall back to HTTP (core/remotes/docker/config: "host will
// try HTTPS first"), so none are rendered for it.
func plainHTTP(m *Mirror) bool {
	if strings.HasPrefix(m.Spec.Endpoint, "http://") {
		return true
	}
	for _, ep := range m.Spec.FallbackEndpoints {
		if strings.HasPrefix(string(ep), "http://") {
			return true
		}
	}
	return false
}

// usesCA reports whether the mirror's host entries reference ca.crt.
func usesCA(m *Mirror) bool { return len(m.CA) > 0 && !plainHTTP(m) }

func entry(m *Mirror) hostEntry {
	e := hostEntry{SkipVerify: m.Spec.InsecureSkipVerify && !plainHTTP(m)}
	caps := m.Spec.Capabilities
	if len(caps) == 0 {
		caps = []v1alpha1.Capability{v1alpha1.CapabilityPull, v1alpha1.CapabilityResolve}
	}
	for _, cp := range caps {
		e.Capabilities = append(e.Capabilities, string(cp))
	}
	slices.SortFunc(e.Capabilities, func(a, b string) int { return cmp.Compare(capOrder(a), capOrder(b)) })
	e.Capabilities = slices.Compact(e.Capabilities)
	if usesCA(m) {
		e.CA = CAFile
	}
	if usesClientCert(m) {
		e.Client = [][2]string{{ClientCertFile, ClientKeyFile}}
	}
	return e
}

func capOrder(c string) int {
	return slices.Index([]string{"pull", "resolve", "push"}, c)
}

// endpoint returns the mirror's first endpoint URL (default https://<host>) and its
// cleaned path ("" when it has none).
func endpoint(m *Mirror) (string, string) {
	ep := endpoints(m)[0]
	return ep.url, ep.path
}

// cleanEndpoint is one of a mirror's endpoints: its URL with the path cleaned, and that path.
type cleanEndpoint struct{ url, path string }

// endpoints returns the mirror's endpoints in priority order: endpoint (default
// https://<host>), then fallbackEndpoints.
func endpoints(m *Mirror) []cleanEndpoint {
	first := m.Spec.Endpoint
	if first == "" {
		first = "https://" + string(m.Spec.Host)
	}
	raw := []string{first}
	for _, e := range m.Spec.FallbackEndpoints {
		raw = append(raw, string(e))
	}
	out := make([]cleanEndpoint, 0, len(raw))
	for _, r := range raw {
		u, _ := url.Parse(r) // checked by check
		p := ""
		if u.Path != "" && u.Path != "/" {
			p = path.Clean(u.Path)
		}
		u.Path, u.RawPath = p, ""
		out = append(out, cleanEndpoint{url: u.String(), path: p})
	}
	return out
}

// Endpoints returns the mirror's endpoint URLs in priority order, as nodes reach them.
func (m *Mirror) Endpoints() []string {
	var out []string
	for _, ep := range endpoints(m) {
		out = append(out, ep.url)
	}
	return out
}

// check refuses input a node must never act on, whatever admission let through.
func check(m *Mirror) *MirrorError {
	fail := func(field string, err error) *MirrorError {
		return &MirrorError{Mirror: m.Name, Field: field, Err: err, Reason: v1alpha1.ReasonApplyFailed}
	}
	if _, err := HostDir(string(m.Spec.Host)); err != nil {
		return fail("spec.host", err)
	}
	if ep := m.Spec.Endpoint; ep != "" {
		if err := checkEndpoint(ep, m.Spec.InsecureSkipVerify); err != nil {
			return fail("spec.endpoint", err)
		}
	}
	for i, ep := range m.Spec.FallbackEndpoints {
		if err := checkEndpoint(string(ep), m.Spec.InsecureSkipVerify); err != nil {
			return fail(fmt.Sprintf("spec.fallbackEndpoints[%d]", i), err)
		}
	}
	for i, u := range m.Spec.MirrorOf {
		field := fmt.Sprintf("spec.mirrorOf[%d]", i)
		if u.Host == v1alpha1.DefaultHost {
			// containerd's own directory name for every other registry.
		} else if _, err := HostDir(string(u.Host)); err != nil {
			return fail(field+".host", err)
		}
		if u.Path != "" {
			if err := checkPath(u.Path); err != nil {
				return fail(field+".path", err)
			}
		}
	}
	for i, a := range m.Spec.HostAliases {
		field := fmt.Sprintf("spec.hostAliases[%d]", i)
		if _, err := netip.ParseAddr(a.IP); err != nil || strings.Contains(a.IP, "%") {
			return fail(field+".ip", fmt.Errorf("%q is not an IP address", a.IP))
		}
		if len(a.Hostnames) == 0 {
			return fail(field+".hostnames", fmt.Errorf("needs at least one hostname"))
		}
		for j, h := range a.Hostnames {
			if err := ValidateHost(string(h)); err != nil || strings.ContainsAny(string(h), ":[]") {
				return fail(fmt.Sprintf("%s.hostnames[%d]", field, j), fmt.Errorf("%q is not a lowercase DNS name", h))
			}
		}
	}
	for i, cp := range m.Spec.Capabilities {
		if capOrder(string(cp)) < 0 {
			return fail(fmt.Sprintf("spec.capabilities[%d]", i), fmt.Errorf("unknown capability %q", cp))
		}
	}
	if len(m.CA) > 0 {
		if _, err := cabundle.Parse(m.CA); err != nil {
			return fail("CA bundle", err)
		}
	}
	if len(m.ClientCert) > 0 || len(m.ClientKey) > 0 {
		// The error names no key material: X509KeyPair's messages never quote it.
		if _, err := tls.X509KeyPair(m.ClientCert, m.ClientKey); err != nil {
			return fail("client certificate", err)
		}
	}
	return nil
}

func checkEndpoint(ep string, insecure bool) error {
	u, err := url.Parse(ep)
	switch {
	case err != nil:
		return err
	case u.Scheme != "https" && (u.Scheme != "http" || !insecure):
		return fmt.Errorf("%q must be an https:// URL (http:// only with insecureSkipVerify)", ep)
	case u.User != nil:
		return fmt.Errorf("must not carry credentials")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("must not have a query or fragment")
	case u.Opaque != "":
		return fmt.Errorf("%q is not a URL with a host", ep)
	}
	if err := ValidateHost(u.Host); err != nil {
		return fmt.Errorf("host %q: %w", u.Host, err)
	}
	if u.Path != "" {
		return checkPath(u.Path)
	}
	return nil
}

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with '/'", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." {
			return fmt.Errorf("path %q must not contain '.' or '..' segments", p)
		}
	}
	for _, r := range p {
		if !isPathRune(r) {
			return fmt.Errorf("path %q may only contain letters, digits, '/', '.', '_', '~' and '-'", p)
		}
	}
	return nil
}

// normalizePEM gives every CA file the same line endings and a final newline.
func normalizePEM(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.TrimSpace(b)
	return append(b, '\n')
}

// FileOwners maps each file path to the RegistryMirror it was rendered for.
func (c *Config) FileOwners() map[string]string { return maps.Clone(c.fileOwner) }

// MirrorHash is a stable digest of what the configuration holds for one mirror: the files
// of the host directories it owns and its hosts lines. "" when it holds nothing for it.
func (c *Config) MirrorHash(mirror string) string {
	sub := &Config{Files: map[string][]byte{}}
	for p, data := range c.Files {
		if c.fileOwner[p] == mirror {
			sub.Files[p] = data
		}
	}
	for _, e := range c.HostsEntries {
		if e.Mirror == mirror {
			sub.HostsEntries = append(sub.HostsEntries, e)
		}
	}
	if len(sub.Files) == 0 && len(sub.HostsEntries) == 0 {
		return ""
	}
	return sub.Hash()
}

// Hash is a stable digest of the whole configuration, for reporting what a node applied.
func (c *Config) Hash() string {
	h := sha256.New()
	paths := make([]string, 0, len(c.Files))
	for p := range c.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(c.Files[p]))
		h.Write(c.Files[p])
	}
	for _, e := range c.HostsEntries {
		fmt.Fprintf(h, "hosts\x00%s\x00%s\x00", e.IP, strings.Join(e.Hostnames, " "))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// isPathRune reports whether r may appear in an endpoint or upstream path.
func isPathRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._~-", r)
}
