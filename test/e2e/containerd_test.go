//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/regwire/regwire/internal/test/testutil"
)

// containerd is a private containerd (Debian's package) for the test: its own root, state,
// sockets and registry config_path; never the machine's default instance.
type containerd struct {
	socket  string
	cmd     *exec.Cmd
	images  runtimeapi.ImageServiceClient
	runtime runtimeapi.RuntimeServiceClient
}

const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  # This machine's root lacks CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  sandbox_image = %[8]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[6]q
  # Where the regwire agent writes hosts.toml and the CA: read at every pull, no restart.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[7]q
`

// startContainerd runs containerd with configPath as its registry config_path.
func startContainerd(t *testing.T, l *logs, dir, configPath string) *containerd {
	t.Helper()
	return startContainerdWith(t, l, dir, configPath, "registry.k8s.io/pause:3.10")
}

// startContainerdWith runs containerd with sandbox as the pod sandbox ("pause") image,
// behind the command prefix wrap (namespaces to enter; none when empty).
func startContainerdWith(t *testing.T, l *logs, dir, configPath, sandbox string, wrap ...string) *containerd {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Fatal("containerd is missing: install it with `apt-get install -y containerd runc` (.ci/run does)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc is missing: install it with `apt-get install -y runc` (.ci/run does)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// containerd 1.6's shims and ctr keep their sockets, fifos and runc state under
	// /run/containerd whatever the config says; remove it afterwards unless it was there.
	if _, err := os.Stat("/run/containerd"); os.IsNotExist(err) {
		t.Cleanup(func() { _ = os.RemoveAll("/run/containerd") })
	}
	c := &containerd{socket: filepath.Join(dir, "containerd.sock")}
	conf := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket, c.socket+".ttrpc",
		filepath.Join(dir, "opt"), filepath.Join(dir, "cni"), configPath, sandbox)
	confFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append(slices.Clone(wrap), bin, "--config", confFile, "--log-level", "info")
	c.cmd = start(t, l, "containerd", nil, argv[0], argv[1:]...)
	conn, err := grpc.NewClient("unix://"+c.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c.images = runtimeapi.NewImageServiceClient(conn)
	c.runtime = runtimeapi.NewRuntimeServiceClient(conn)
	testutil.Eventually(t, 30*time.Second, "containerd's CRI image service answering", func() error {
		_, err := c.images.ListImages(context.Background(), &runtimeapi.ListImagesRequest{})
		return err
	})
	return c
}

// pull pulls ref through the CRI image service exactly as kubelet does, with the
// credentials of a pull secret.
func (c *containerd) pull(ref, user, pass string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
	if user != "" {
		req.Auth = &runtimeapi.AuthConfig{Username: user, Password: pass}
	}
	resp, err := c.images.PullImage(ctx, req)
	if err != nil {
		return "", err
	}
	return resp.ImageRef, nil
}

// pullAsKubelet pulls ref with credentials the way kubelet passes a pull secret's entry:
// with the registry it was matched to as ServerAddress (e.g. docker.io), which containerd
// uses to send them to that host only.
func (c *containerd) pullAsKubelet(ref, server, user, pass string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref},
		Auth: &runtimeapi.AuthConfig{ServerAddress: server, Username: user, Password: pass}})
	return err
}

// remove deletes ref from containerd's images, so that the next pull goes to the registry.
func (c *containerd) remove(t *testing.T, ref string) {
	t.Helper()
	if _, err := c.images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("removing %s: %v", ref, err)
	}
}

// tryRemove removes an image from containerd's CRI image store and checks that it is gone.
func (c *containerd) tryRemove(ref string) error {
	ctx := context.Background()
	if _, err := c.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return err
	}
	st, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return err
	}
	if st.Image != nil {
		return fmt.Errorf("%s is still on the node", ref)
	}
	return nil
}

// run runs the image with containerd and runc (ctr run, in the CRI namespace where the
// pull put it) and returns what it printed.
func (c *containerd) run(t *testing.T, ref, id string) string {
	t.Helper()
	ctr, err := exec.LookPath("ctr")
	if err != nil {
		t.Fatal("ctr is missing: it comes with Debian's containerd package")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctr, "--address", c.socket, "--namespace", "k8s.io", "run", "--rm", ref, id).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr run %s: %v\n%s", ref, err, out)
	}
	return strings.TrimSpace(string(out))
}
