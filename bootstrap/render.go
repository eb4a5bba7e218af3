package bootstrap

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// RenderOptions say what `regwire bootstrap render` writes.
type RenderOptions struct {
	// PKI names the registry's certificate carries (default DNS name nexus.local).
	PKI PKIOptions
	// Compose, Kind and Nginx tune the generated files; Nginx's ServerName defaults to
	// the first DNS name, its upstream to the compose Nexus.
	Compose ComposeOptions
	Kind    KindOptions
	Nginx   NginxOptions
}

// Rendered lists what Render wrote into the state directory.
type Rendered struct {
	Dir string
	// PKI says which certificates were issued this time.
	PKI *PKIResult
	// Files are the generated files, relative to Dir.
	Files []string
}

// TLSDir is the state directory's folder for the CA, the certificate and their keys.
const TLSDir = "tls"

// Render writes every generated file into dir: the CA and server certificate (kept when
// still good), nginx.conf, docker-compose.yaml and the kind config. It starts nothing.
func Render(dir string, o RenderOptions) (*Rendered, error) {
	if len(o.PKI.DNSNames) == 0 && len(o.PKI.IPs) == 0 {
		o.PKI.DNSNames = []string{"nexus.local"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	pki, err := EnsurePKI(filepath.Join(dir, TLSDir), o.PKI)
	if err != nil {
		return nil, err
	}
	if o.Nginx.ServerName == "" {
		if len(o.PKI.DNSNames) > 0 {
			o.Nginx.ServerName = o.PKI.DNSNames[0]
		} else {
			o.Nginx.ServerName = o.PKI.IPs[0].String()
		}
	}
	if o.Nginx.Upstream == "" {
		o.Nginx.Upstream = net.JoinHostPort(NexusService, fmt.Sprint(NexusPort))
	}
	nginx, err := RenderNginx(o.Nginx)
	if err != nil {
		return nil, err
	}
	compose, err := RenderCompose(o.Compose)
	if err != nil {
		return nil, err
	}
	kind, err := RenderKind(o.Kind)
	if err != nil {
		return nil, err
	}
	out := &Rendered{Dir: dir, PKI: pki, Files: []string{
		filepath.Join(TLSDir, CACertFile), filepath.Join(TLSDir, CAKeyFile),
		filepath.Join(TLSDir, ServerCertFile), filepath.Join(TLSDir, ServerKeyFile),
	}}
	for _, f := range []struct {
		name string
		data []byte
	}{{NginxConfFile, nginx}, {ComposeFile, compose}, {KindConfigFile, kind}} {
		if err := writeFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
		out.Files = append(out.Files, f.name)
	}
	return out, nil
}
