package registryhttp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// DialGuard keeps a copy from reaching addresses a tenant could aim it at to read what they
// should not: loopback (the manager's own pod, services on its node), link-local (cloud
// metadata services at 169.254.169.254 and fd00:ec2::254, and the like) and unspecified
// addresses, unless Allow holds them. It judges the address actually dialled, after name
// resolution: a host name that resolves there, a redirect or a token realm naming one, are
// refused the same. Private networks (10.0.0.0/8, …) are where registries live and stay
// reachable.
type DialGuard struct {
	// Allow are the guarded addresses that may be reached all the same (a registry on the
	// node's loopback in a laptop cluster, say).
	Allow []netip.Prefix
	// Flag names the setting that fills Allow, for the error's advice.
	Flag string
}

// DialRefusedError is a connection the DialGuard refused.
type DialRefusedError struct {
	// Address dialled, host:port.
	Address string
	// Kind is "loopback", "link-local" or "unspecified".
	Kind string
	// Flag is the setting that would allow it.
	Flag string
}

func (e *DialRefusedError) Error() string {
	return fmt.Sprintf("refused to connect to %s, a %s address: a registry named by an ImageSync may not lead the manager there; an administrator can allow it with %s", e.Address, e.Kind, e.Flag)
}

// Control is a net.Dialer Control function: it refuses a guarded address before the
// connection is made.
func (g *DialGuard) Control(_, address string, _ syscall.RawConn) error {
	if g == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	ip = ip.Unmap()
	kind := ""
	switch {
	case ip.IsLoopback():
		kind = "loopback"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		kind = "link-local"
	case ip.IsUnspecified():
		kind = "unspecified"
	case ip == awsMetadataV6:
		kind = "link-local" // AWS's IPv6 metadata address is a unique-local one
	default:
		return nil
	}
	if slices.ContainsFunc(g.Allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return nil
	}
	return &DialRefusedError{Address: address, Kind: kind, Flag: g.Flag}
}

// awsMetadataV6 is the EC2 instance metadata service's IPv6 address.
var awsMetadataV6 = netip.MustParseAddr("fd00:ec2::254")

// key identifies the guard in a Pool's transports.
func (g *DialGuard) key() string {
	if g == nil {
		return ""
	}
	parts := []string{"guarded"}
	for _, p := range g.Allow {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}
