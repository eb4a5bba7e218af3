package nodeconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/regwire/regwire/api/v1alpha1"
)

// ValidateHost checks a registry host as image references name it: a lowercase DNS name,
// an IPv4 address or a bracketed IPv6 address, optionally with :port. It repeats the CRD's
// CEL rules so that a node never acts on a host that slipped past admission (an object
// written before a CRD upgrade, or a file given to `regwire node apply`).
func ValidateHost(host string) error {
	switch {
	case host == "":
		return errors.New("must not be empty")
	case len(host) > 255:
		return errors.New("must be at most 255 characters")
	case strings.ContainsAny(host, "\x00"):
		return errors.New("must not contain NUL")
	case strings.Contains(host, "://"):
		return errors.New("must not include a scheme")
	case strings.ContainsAny(host, `/\`):
		return errors.New("must not contain '/' or '\\'")
	case strings.Contains(host, ".."):
		return errors.New("must not contain '..'")
	}
	for _, r := range host {
		if r <= ' ' || r == 0x7f {
			return errors.New("must not contain whitespace or control characters")
		}
	}
	name, port := host, ""
	if strings.HasPrefix(host, "[") {
		end := strings.Index(host, "]")
		if end < 0 {
			return errors.New("IPv6 address must be enclosed in [ ]")
		}
		addr, err := netip.ParseAddr(host[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return fmt.Errorf("%q is not an IPv6 address", host[1:end])
		}
		if rest := host[end+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return errors.New("only :port may follow an IPv6 address")
			}
			port = rest[1:]
		}
		name = ""
	} else if i := strings.LastIndex(host, ":"); i >= 0 {
		name, port = host[:i], host[i+1:]
	}
	if port != "" || strings.HasSuffix(host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return fmt.Errorf("port %q must be a number between 1 and 65535", port)
		}
	}
	if name == "" {
		return nil
	}
	for _, label := range strings.Split(name, ".") {
		if err := validateLabel(label); err != nil {
			return err
		}
	}
	return nil
}

func validateLabel(l string) error {
	if l == "" || len(l) > 63 {
		return fmt.Errorf("label %q must be 1 to 63 characters", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(l)-1) {
			return fmt.Errorf("label %q must be lowercase letters, digits and inner '-'", l)
		}
	}
	return nil
}

// HostDir returns the directory, relative to containerd's config_path, in which containerd
// looks for the configuration of host: the host exactly as written, "host:port" included.
// containerd first tries a "host_port_" directory, then "host:port", then "_default"
// (core/remotes/docker/config hostPaths); regwire writes "host:port", the documented form,
// and the agent refuses to proceed while a foreign "host_port_" directory would shadow it.
func HostDir(host string) (string, error) {
	if err := ValidateHost(host); err != nil {
		return "", fmt.Errorf("host %q: %w", host, err)
	}
	if !filepath.IsLocal(host) || filepath.Base(host) != host {
		return "", fmt.Errorf("host %q does not name a single directory", host)
	}
	return host, nil
}

// ShadowDir returns the "host_port_" directory that containerd would prefer over HostDir
// for a host with a port, or "" when there is none.
func ShadowDir(host string) string {
	if i := strings.LastIndex(host, ":"); i > 0 && !strings.HasSuffix(host, "]") {
		return host[:i] + "_" + host[i+1:] + "_"
	}
	return ""
}

// CheckPath refuses any path, relative to rt's root, that is not one regwire renders for
// rt: <host>/hosts.toml and <host>/ca.crt for containerd (with _default as a host);
// registries.conf.d/regwire-<mirror>.conf and certs.d/<host>/ca.crt for CRI-O;
// <host>/ca.crt for Docker; and client.cert and client.key next to each ca.crt. The agent checks every write and its ownership record with
// it, so nothing outside the runtime's registry files is ever touched.
func CheckPath(rt v1alpha1.ContainerRuntime, p string) error {
	dir, file := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	hostFile := func(dir string, files ...string) error {
		if dir != string(v1alpha1.DefaultHost) || rt != v1alpha1.RuntimeContainerd {
			if _, err := HostDir(dir); err != nil {
				return fmt.Errorf("refusing to write %q: %w", p, err)
			}
		}
		if !slices.Contains(files, file) {
			return fmt.Errorf("refusing to write %q: only %s are written there", p, strings.Join(files, " and "))
		}
		return nil
	}
	switch rt {
	case v1alpha1.RuntimeContainerd, "":
		return hostFile(dir, HostsFile, CAFile, ClientCertFile, ClientKeyFile)
	case v1alpha1.RuntimeDocker:
		return hostFile(dir, CAFile, ClientCertFile, ClientKeyFile)
	case v1alpha1.RuntimeCRIO:
		if dir == DropInDir {
			if !strings.HasPrefix(file, dropInPrefix) || !strings.HasSuffix(file, ".conf") || !filepath.IsLocal(file) || strings.ContainsAny(file, "\\\x00") {
				return fmt.Errorf("refusing to write %q: only %s*.conf drop-ins are written in %s", p, dropInPrefix, DropInDir)
			}
			return nil
		}
		if host, ok := strings.CutPrefix(dir, CertsDir+"/"); ok {
			return hostFile(host, CAFile, ClientCertFile, ClientKeyFile)
		}
		return fmt.Errorf("refusing to write %q: only %s/ drop-ins and %s/<host>/ files are written", p, DropInDir, CertsDir)
	}
	return fmt.Errorf("refusing to write %q: unknown container runtime %q", p, rt)
}
