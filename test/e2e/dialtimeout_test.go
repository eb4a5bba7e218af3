//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/test/testutil"
)

// deadEndpointInTheKindNode measures, in the kind node (containerd 2.4), what a dead
// endpoint costs a pull: the mirror's endpoint becomes an address whose packets the node
// drops (a dead host: connects hang), nginx its fallback endpoint. containerd tries the
// hosts in order for each request of the pull of nexus.local/my-docker/busybox:1.36, so
// the dead endpoint costs each such request its dial timeout: with 5s a whole number of
// 5 s waits, and with the default 200ms as many 200ms waits: containerd follows the
// written dial_timeout.
// It returns the timings and puts the mirror back.
func deadEndpointInTheKindNode(t *testing.T, ctx context.Context, d *testutil.Docker, kubectl func(args ...string) string) string {
	t.Helper()
	run := func(args ...string) string { t.Helper(); return d.Run(t, ctx, args...) }
	const node, deadIP, image = "regwire-control-plane", "203.0.113.7", "nexus.local/my-docker/busybox:1.36"
	inNode := func(args ...string) string { t.Helper(); return run(append([]string{"exec", node}, args...)...) }
	crictl := []string{"crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock"}

	// The pull secret's credentials, as kubelet passes them.
	raw := kubectl("get", "secret", "nexus-pull", "-o", `jsonpath={.data.\.dockerconfigjson}`)
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	auth, err := base64.StdEncoding.DecodeString(cfg.Auths["nexus.local"].Auth)
	if err != nil || !strings.Contains(string(auth), ":") {
		t.Fatalf("the pull secret's entry for nexus.local: %v", err)
	}
	pull := func() time.Duration {
		t.Helper()
		_, _ = d.Docker(ctx, append([]string{"exec", node}, append(crictl, "rmi", image)...)...) // absent the first time
		start := time.Now()
		inNode(append(crictl, "pull", "--creds", string(auth), image)...)
		return time.Since(start)
	}
	best := func(n int) time.Duration {
		d := pull()
		for range n - 1 {
			d = min(d, pull())
		}
		return d
	}
	written := func(want, unwanted string) {
		t.Helper()
		testutil.Eventually(t, time.Minute, "the node's hosts.toml for nexus.local", func() error {
			got := inNode("cat", "/etc/containerd/certs.d/nexus.local/hosts.toml")
			if !strings.Contains(got, want) || (unwanted != "" && strings.Contains(got, unwanted)) {
				return fmt.Errorf("hosts.toml:\n%s", got)
			}
			return nil
		})
	}

	healthy := best(3)
	inNode("iptables", "-I", "OUTPUT", "-d", deadIP, "-j", "DROP")
	kubectl("patch", "registrymirror", "nexus", "--type=merge", "-p",
		`{"spec":{"endpoint":"https://`+deadIP+`","fallbackEndpoints":["https://nexus.local"]}}`)
	written("https://"+deadIP, "")
	written("dial_timeout = '200ms'", "")
	dead := best(3)
	kubectl("patch", "registrymirror", "nexus", "--type=merge", "-p", `{"spec":{"dialTimeout":"5s"}}`)
	written("dial_timeout = '5s'", "")
	dead5 := best(1)

	kubectl("patch", "registrymirror", "nexus", "--type=merge", "-p", `{"spec":{"endpoint":null,"fallbackEndpoints":null,"dialTimeout":null}}`)
	written("nexus.local", deadIP)
	inNode("iptables", "-D", "OUTPUT", "-d", deadIP, "-j", "DROP")

	// Each request of the pull that tries the dead endpoint first waits one dial timeout
	// there: with 5s the count shows (k × 5 s), and the default must cost k × 200ms.
	// The healthy pull is one sample: its own jitter (tens of milliseconds) is allowed
	// below each bound.
	const jitter = 100 * time.Millisecond
	extra, extra5 := dead-healthy, dead5-healthy
	tries := int((extra5 + 2500*time.Millisecond) / (5 * time.Second))
	if tries < 1 || extra5 < time.Duration(tries)*5*time.Second-jitter || extra5 > time.Duration(tries)*5*time.Second+time.Second {
		t.Errorf("with dialTimeout 5s a pull took %s more than a healthy one: not a whole number of 5 s waits, containerd does not follow dial_timeout", extra5.Round(time.Millisecond))
	}
	if want := time.Duration(tries) * 200 * time.Millisecond; extra < want-jitter || extra > want+500*time.Millisecond {
		t.Errorf("with the default 200ms a pull took %s more than a healthy one (%s); want %d tries × 200ms = %s", extra.Round(time.Millisecond), healthy.Round(time.Millisecond), tries, want)
	}
	return fmt.Sprintf("healthy pull %s; with the first endpoint dead %d of the pull's requests tried it first: %s (+%s) with the default dialTimeout 200ms, %s (+%s) with 5s",
		healthy.Round(time.Millisecond), tries, dead.Round(time.Millisecond), extra.Round(time.Millisecond), dead5.Round(time.Millisecond), extra5.Round(time.Millisecond))
}
