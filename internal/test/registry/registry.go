// Package registry runs CNCF distribution registry processes (bin/registry, which `make
// tools` builds from the Go module proxy) on loopback, for the tests (through
// testutil.StartRegistry) and the benchmark. It uses nothing but the standard library.
package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config configures one registry process.
type Config struct {
	// Dir holds its configuration and storage (created; left as it is).
	Dir string
	// Addr is host:port to serve on; "" takes a free loopback port.
	Addr string
	// LogLevel is distribution's log level (default "warn"); the access log is off.
	LogLevel string
	// CertFile and KeyFile, when set, serve HTTPS.
	CertFile, KeyFile string
	// Htpasswd, when set, is an htpasswd file for basic auth.
	Htpasswd string
	// Token, when set, makes the registry want bearer tokens (instead of Htpasswd).
	Token *Token
	// InMemoryBlobDescriptors caches blob descriptors in memory, as distribution's own
	// default configuration does.
	InMemoryBlobDescriptors bool
	// Probe is the client that asks /v2/ until the registry answers (default: one that
	// skips TLS verification, enough to see it serve).
	Probe *http.Client
	// Output receives the registry's log (default: discarded). When it is a fmt.Stringer,
	// the error of a registry that does not start quotes it.
	Output io.Writer
}

// Token is a bearer token server the registry trusts.
type Token struct {
	Realm, Service, Issuer string
	// RootCertBundle is the PEM file of the token signer's certificate.
	RootCertBundle string
}

// Process is a running registry.
type Process struct {
	// Addr is host:port, as image references name it; URL the base URL.
	Addr, URL string
	cmd       *exec.Cmd
}

// Start writes the configuration into c.Dir, starts bin serving it and waits (15 s at
// most) until the registry answers.
func Start(bin string, c Config) (*Process, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	if c.Addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		c.Addr = l.Addr().String()
		_ = l.Close()
	}
	cfgFile := filepath.Join(c.Dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(c.yaml()), 0o600); err != nil {
		return nil, err
	}
	scheme := "http"
	if c.CertFile != "" {
		scheme = "https"
	}
	p := &Process{Addr: c.Addr, URL: scheme + "://" + c.Addr}
	p.cmd = exec.Command(bin, "serve", cfgFile)
	if c.Output != nil {
		p.cmd.Stdout, p.cmd.Stderr = c.Output, c.Output
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	probe := c.Probe
	if probe == nil {
		probe = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // only asks whether our own process serves
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v2/", nil)
		resp, err := probe.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			return p, nil
		}
		if ctx.Err() != nil {
			p.Stop()
			err = fmt.Errorf("the registry in %s did not start: %w", c.Dir, err)
			if log, ok := c.Output.(fmt.Stringer); ok {
				err = fmt.Errorf("%w\n%s", err, log)
			}
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c Config) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\nlog:\n  level: %s\n  accesslog:\n    disabled: true\nstorage:\n", cmpOr(c.LogLevel, "warn"))
	if c.InMemoryBlobDescriptors {
		b.WriteString("  cache:\n    blobdescriptor: inmemory\n")
	}
	fmt.Fprintf(&b, "  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(c.Dir, "data"), c.Addr)
	if c.CertFile != "" {
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", c.CertFile, c.KeyFile)
	}
	switch {
	case c.Token != nil:
		fmt.Fprintf(&b, "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n", c.Token.Realm, c.Token.Service, c.Token.Issuer, c.Token.RootCertBundle)
	case c.Htpasswd != "":
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: regwire-test\n    path: %s\n", c.Htpasswd)
	}
	return b.String()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Stop kills the registry and waits for it.
func (p *Process) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// CPU is the CPU time (user + system) the registry has used so far.
func (p *Process) CPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses): utime is the 12th, stime
	// the 13th, in clock ticks of 1/100 s.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
