// Command coredns is CoreDNS, at the version kubeadm deploys, with the plugins kubeadm's
// Corefile uses and no others: the Docker suite's kind node image runs it, and the cloud
// plugins (Route 53, Cloud DNS, Azure) would only make the build several times longer.
// The directives keep CoreDNS's own order (core/dnsserver); a Corefile naming a plugin
// left out here fails to load, saying which.
package main

import (
	"github.com/coredns/coredns/coremain"

	// kubeadm's Corefile (cmd/kubeadm/app/phases/addons/dns): errors, health, ready,
	// kubernetes, prometheus, forward, cache, loop, reload, loadbalance.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() { coremain.Run() }
