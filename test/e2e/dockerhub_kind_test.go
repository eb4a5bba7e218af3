//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/test/testutil"
)

// dockerHubThroughNexusInTheKindNode serves docker.io through the bootstrap's Nexus in
// the kind node (containerd 2.4): the mirror gets mirrorOf docker.io and a proxy
// repository in front of the test's Docker Hub stand-in (upstream:5000, joined to the
// compose network so that Nexus reaches it), which holds an image of its own that the node
// has never seen (docker import of a one-file layer). containerd pulls
// docker.io/library/proxied:1.0 without credentials through nginx and the proxy; once the
// stand-in is stopped and the image removed from the node, it pulls it again from the
// proxy's store (Docker Hub itself is out of reach here, so nothing else could serve it).
// The mirror is put back.
func dockerHubThroughNexusInTheKindNode(t *testing.T, ctx context.Context, d *testutil.Docker, kubectl func(args ...string) string) string {
	t.Helper()
	const node, image = "regwire-control-plane", "docker.io/library/proxied:1.0"
	run := func(args ...string) { t.Helper(); d.Run(t, ctx, args...) }
	crictl := []string{"exec", node, "crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock"}

	layer := filepath.Join(t.TempDir(), "layer.tar")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	content := []byte("proxied through Nexus at " + time.Now().String() + "\n")
	_ = tw.WriteHeader(&tar.Header{Name: "proxied.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Now()})
	_, _ = tw.Write(content)
	_ = tw.Close()
	if err := os.WriteFile(layer, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run("import", layer, "127.0.0.1:5000/library/proxied:1.0")
	run("push", "127.0.0.1:5000/library/proxied:1.0")
	run("network", "connect", "regwire", "upstream")
	kubectl("patch", "registrymirror", "nexus", "--type=merge", "-p",
		`{"spec":{"mirrorOf":[{"host":"docker.io"}],"provision":{"nexus":{"proxies":[{"upstream":"docker.io","repository":"docker-hub","remoteURL":"http://upstream:5000"}]}}}}`)
	kubectl("wait", "--for=condition=Ready", "registrymirror/nexus", "--timeout=2m")
	testutil.Eventually(t, time.Minute, "the node's hosts.toml for docker.io", func() error {
		got, err := d.Docker(ctx, "exec", node, "cat", "/etc/containerd/certs.d/docker.io/hosts.toml")
		if err != nil {
			return err
		}
		if !strings.Contains(got, "/v2/docker-hub") {
			return fmt.Errorf("hosts.toml:\n%s", got)
		}
		return nil
	})
	start := time.Now()
	run(append(crictl, "pull", image)...)
	first := time.Since(start)

	run("stop", "upstream")
	run(append(crictl, "rmi", image)...)
	start = time.Now()
	run(append(crictl, "pull", image)...)
	again := time.Since(start)
	run("start", "upstream")

	kubectl("patch", "registrymirror", "nexus", "--type=merge", "-p", `{"spec":{"mirrorOf":null,"provision":{"nexus":{"proxies":null}}}}`)
	kubectl("wait", "--for=condition=Ready", "registrymirror/nexus", "--timeout=2m")
	return fmt.Sprintf("%s pulled without credentials through the Nexus proxy in %s; with the stand-in stopped and the image removed, again from the proxy's store in %s",
		image, first.Round(time.Millisecond), again.Round(time.Millisecond))
}
