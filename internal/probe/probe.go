// Package probe checks from a node that a registry answers, the way containerd will reach it:
// through the node's hosts file, with the mirror's CA.
package probe

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/regwire/regwire/internal/cabundle"
	"github.com/regwire/regwire/internal/hostsfile"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// Result is what one probe of a registry found.
type Result struct {
	// Reachable is true when the registry answered 200 or 401 to GET /v2/.
	Reachable bool
	// StatusCode is the HTTP status, 0 when the request failed.
	StatusCode int
	// Err says why the registry is not reachable.
	Err string
}

// Timeout bounds one probe.
const Timeout = 5 * time.Second

// Probe asks the mirror's endpoint for its registry API root (GET /v2/, or the endpoint's
// own path when it has one, as containerd's override_path does), trusting the mirror's CA
// as containerd will. 200 and 401 (authentication required) both mean the registry is
// there and the TLS chain is good.
func Probe(ctx context.Context, m nodeconfig.Mirror) Result {
	return Prober{}.Probe(ctx, m)
}

// Prober probes registries the way the node resolves them.
type Prober struct {
	// HostsFile is the node's hosts file (the one the agent edits). Names in it resolve
	// from it before DNS: an agent pod on the host network sees a copy of the node's
	// /etc/hosts taken when the pod started, not the aliases it has added since.
	HostsFile string
	// Transports, when set, keeps a transport per trust (CA, client certificate,
	// verification) between probes, so that a registry probed every minute by every node
	// is asked over connections kept alive rather than a new TLS handshake each time. A
	// change of the mirror's trust is a new transport, and so a new handshake. Nil: a new
	// connection for each probe.
	Transports *Transports
}

// Transports are the kept-alive transports of a Prober, at most maxTransports of them (a
// mirror whose CA rotates leaves its old transport behind).
type Transports struct {
	mu sync.Mutex
	m  map[string]*http.Transport // by trust digest
}

const maxTransports = 64

// idleTimeout closes a kept-alive connection unused for longer than a probe interval and a
// half, so that a registry's rotated certificate is seen within a few probes.
const idleTimeout = 90 * time.Second

// Probe is the package's Probe, resolving through p.HostsFile first.
func (p Prober) Probe(ctx context.Context, m nodeconfig.Mirror) Result {
	u, err := probeURL(m)
	if err != nil {
		return Result{Err: err.Error()}
	}
	client, err := p.client(m)
	if err != nil {
		return Result{Err: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{Err: err.Error()}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Err: trimURLError(err)}
	}
	_ = resp.Body.Close()
	res := Result{StatusCode: resp.StatusCode}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusUnauthorized:
		res.Reachable = true
	default:
		res.Err = fmt.Sprintf("GET %s answered %s, want 200 or 401 from a registry", u, resp.Status)
	}
	return res
}

// client is an HTTP client for the mirror as the runtime sees it: its CA, its client
// certificate, names resolved through the node's hosts file, no redirects followed.
func (p Prober) client(m nodeconfig.Mirror) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.Spec.InsecureSkipVerify} // verification off only when the user asked
	if len(m.CA) > 0 {
		b, err := cabundle.Parse(m.CA)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		tlsConf.RootCAs = b.Pool()
	}
	if len(m.ClientCert) > 0 {
		// The registry may require it (mutual TLS): present it as the runtime will.
		pair, err := tls.X509KeyPair(m.ClientCert, m.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{pair}
	}
	client := &http.Client{
		Timeout:   Timeout,
		Transport: p.transport(m, tlsConf),
		// A registry that redirects /v2/ elsewhere is not what containerd will talk to.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return client, nil
}

// transport is the kept-alive transport for the mirror's trust, or a fresh one without
// keep-alives when the Prober keeps none.
func (p Prober) transport(m nodeconfig.Mirror, tlsConf *tls.Config) *http.Transport {
	fresh := func(keepAlive bool) *http.Transport {
		return &http.Transport{TLSClientConfig: tlsConf, Proxy: http.ProxyFromEnvironment, DisableKeepAlives: !keepAlive,
			IdleConnTimeout: idleTimeout, MaxIdleConnsPerHost: 2, DialContext: p.dial}
	}
	if p.Transports == nil {
		return fresh(false)
	}
	h := sha256.New()
	for _, b := range [][]byte{m.CA, m.ClientCert, m.ClientKey, []byte(strconv.FormatBool(m.Spec.InsecureSkipVerify))} {
		_, _ = fmt.Fprintf(h, "%d:", len(b))
		_, _ = h.Write(b)
	}
	key := hex.EncodeToString(h.Sum(nil))
	ts := p.Transports
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, ok := ts.m[key]; ok {
		return t
	}
	if ts.m == nil || len(ts.m) >= maxTransports {
		for _, t := range ts.m {
			t.CloseIdleConnections()
		}
		ts.m = map[string]*http.Transport{}
	}
	t := fresh(true)
	ts.m[key] = t
	return t
}

// probeURL is the registry API root containerd will use for the mirror's own host.
func probeURL(m nodeconfig.Mirror) (string, error) {
	ep := m.Spec.Endpoint
	if ep == "" {
		ep = "https://" + string(m.Spec.Host)
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v2/"
	} else if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String(), nil
}

// trimURLError drops net/http's `Get "URL": ` prefix, which repeats what the report says.
func trimURLError(err error) string {
	if ue, ok := err.(*url.Error); ok { //nolint:errorlint // the outermost error is always *url.Error here
		return ue.Err.Error()
	}
	return err.Error()
}

// dial connects to addr, taking the host's address from the node's hosts file when it is
// there.
func (p Prober) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.HostsFile != "" {
		if host, port, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host) == nil {
			if b, err := os.ReadFile(p.HostsFile); err == nil {
				if ip := hostsfile.Lookup(b, host); ip != "" {
					addr = net.JoinHostPort(ip, port)
				}
			}
		}
	}
	d := &net.Dialer{Timeout: Timeout}
	return d.DialContext(ctx, network, addr)
}
