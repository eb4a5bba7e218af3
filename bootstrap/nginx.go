package bootstrap

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/util/validation"
)

// NginxOptions describe the TLS proxy in front of the registry.
type NginxOptions struct {
	// ServerName is the registry's host name, as in image references (nexus.local).
	ServerName string
	// Upstream is host:port of the registry behind the proxy (nexus:8081 in compose).
	Upstream string
	// ListenHTTPS and ListenHTTP are nginx listen addresses; defaults 443 and [::]:443,
	// 80 and [::]:80.
	ListenHTTPS, ListenHTTP []string
	// HTTPSPort is the port clients reach HTTPS on, for the HTTP redirect (default 443).
	HTTPSPort int
	// CertFile and KeyFile as nginx sees them (defaults /etc/nginx/ssl/server.crt and .key).
	CertFile, KeyFile string
	// PidFile and TempDir, when set, keep nginx's runtime files there (running outside a
	// container); ErrorLog defaults to stderr.
	PidFile, TempDir, ErrorLog string
}

// nginxTemplate is the usual nginx proxy made right for registries: unlimited and unbuffered
// request bodies (layers of any size stream through instead of failing with 413 or
// filling the disk), unbuffered responses, the client's Host with its port (registries
// build upload Locations from it), X-Forwarded-For and -Proto, HTTP/1.1 keepalive to the
// upstream, TLS 1.2+, and HTTP redirected to HTTPS. No X-Forwarded-Host: Sonatype's own
// nginx example sends none, and Nexus 3.78–3.80 doubles the port of a Bearer realm built
// from one that carries a port (nexus-public #611, #651: https://host:5001:5001/v2/token);
// the Host header already carries host and port.
var nginxTemplate = template.Must(template.New("nginx.conf").Parse(`# Written by regwire bootstrap: a TLS proxy for a container registry.
worker_processes auto;
error_log {{.ErrorLog}} notice;
{{- if .PidFile}}
pid {{.PidFile}};
{{- end}}

events {
  worker_connections 1024;
}

http {
  # Layers of any size: no 413, no body written to disk first.
  client_max_body_size 0;
  proxy_request_buffering off;
  proxy_buffering off;
  proxy_http_version 1.1;
  proxy_read_timeout 900s;
  proxy_send_timeout 900s;
  access_log off;
  server_tokens off;
{{- if .TempDir}}
  client_body_temp_path {{.TempDir}}/client_body;
  proxy_temp_path {{.TempDir}}/proxy;
  fastcgi_temp_path {{.TempDir}}/fastcgi;
  uwsgi_temp_path {{.TempDir}}/uwsgi;
  scgi_temp_path {{.TempDir}}/scgi;
{{- end}}

  upstream registry {
    server {{.Upstream}};
    keepalive 32;
  }

  server {
{{- range .ListenHTTPS}}
    listen {{.}} ssl;
{{- end}}
    server_name {{.ServerName}};

    ssl_certificate {{.CertFile}};
    ssl_certificate_key {{.KeyFile}};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:regwire:10m;

    location / {
      proxy_pass http://registry;
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Connection "";
    }
  }

  server {
{{- range .ListenHTTP}}
    listen {{.}};
{{- end}}
    server_name {{.ServerName}};
    return 301 https://$host{{.RedirectPort}}$request_uri;
  }
}
`))

// RenderNginx returns nginx.conf for o, after checking every value that goes into it.
func RenderNginx(o NginxOptions) ([]byte, error) {
	if o.ServerName == "" {
		return nil, fmt.Errorf("nginx server name: empty; use the registry host, e.g. nexus.local")
	}
	if errs := validation.IsDNS1123Subdomain(o.ServerName); len(errs) > 0 && net.ParseIP(o.ServerName) == nil {
		return nil, fmt.Errorf("nginx server name %q: %s", o.ServerName, strings.Join(errs, "; "))
	}
	if _, port, err := net.SplitHostPort(o.Upstream); err != nil || port == "" {
		return nil, fmt.Errorf("nginx upstream %q: want host:port, e.g. nexus:8081", o.Upstream)
	}
	if len(o.ListenHTTPS) == 0 {
		o.ListenHTTPS = []string{"443", "[::]:443"}
	}
	if len(o.ListenHTTP) == 0 {
		o.ListenHTTP = []string{"80", "[::]:80"}
	}
	if o.HTTPSPort == 0 {
		o.HTTPSPort = 443
	}
	if o.CertFile == "" {
		o.CertFile = "/etc/nginx/ssl/" + ServerCertFile
	}
	if o.KeyFile == "" {
		o.KeyFile = "/etc/nginx/ssl/" + ServerKeyFile
	}
	if o.ErrorLog == "" {
		o.ErrorLog = "stderr"
	}
	for _, v := range append(append([]string{o.Upstream, o.CertFile, o.KeyFile, o.PidFile, o.TempDir, o.ErrorLog}, o.ListenHTTPS...), o.ListenHTTP...) {
		if strings.ContainsAny(v, " \t\r\n;{}\"'$#\\") {
			return nil, fmt.Errorf("nginx value %q: must not contain spaces, quotes or any of ;{}$#\\", v)
		}
	}
	data := struct {
		NginxOptions
		RedirectPort string
	}{NginxOptions: o}
	if o.HTTPSPort != 443 {
		data.RedirectPort = ":" + strconv.Itoa(o.HTTPSPort)
	}
	var b bytes.Buffer
	if err := nginxTemplate.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
