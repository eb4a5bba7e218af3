//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/test/testutil"
)

// TestTheImageRunsWithContainerd builds the regwire image the way `make image` does (no
// Docker), pushes it to a local registry, pulls it with containerd's CRI image service and
// runs `regwire version` with runc: the stamped version, the host's platform, as the
// non-root user. It builds this machine's platform only (see buildRegwireImage).
func TestTheImageRunsWithContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs containerd: run it as root (CI does)")
	}
	l := newLogs(t)
	work := t.TempDir()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	l.add("registry", reg.Log)
	ref := reg.Host + "/regwire:e2e"
	const version = "v9.9.9-e2e"
	buildRegwireImage(t, version, filepath.Join(work, "layout"), ref)
	idx, err := remote.Index(testutil.Ref(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
	}
	if strings.Join(platforms, ",") != "linux/"+runtime.GOARCH {
		t.Errorf("index platforms %v, want this machine's", platforms)
	}
	if _, err := os.Stat(filepath.Join(work, "layout", "index.json")); err != nil {
		t.Errorf("no OCI layout written: %v", err)
	}

	certs := filepath.Join(work, "certs.d")
	hostDir := filepath.Join(certs, reg.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(fmt.Sprintf("server = \"http://%s\"\n", reg.Host)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctrd := startContainerd(t, l, filepath.Join(work, "containerd"), certs)
	if _, err := ctrd.pull(ref, "", ""); err != nil {
		t.Fatalf("CRI PullImage %s: %v", ref, err)
	}
	ctr := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", ctrd.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctr("containers", "create", ref, "regwire-version", "/regwire", "version", "-o", "json")
	defer ctr("containers", "delete", "regwire-version")
	var info struct {
		Spec struct {
			Process struct {
				User struct {
					UID int `json:"uid"`
				} `json:"user"`
			} `json:"process"`
		} `json:"Spec"`
	}
	if err := json.Unmarshal([]byte(ctr("containers", "info", "regwire-version")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Spec.Process.User.UID != 65532 {
		t.Errorf("the container runs as uid %d, want the non-root 65532", info.Spec.Process.User.UID)
	}
	out := ctr("tasks", "start", "regwire-version")
	var v struct {
		Version, Platform string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &v); err != nil {
		t.Fatalf("regwire version printed %q: %v", out, err)
	}
	if v.Version != version || v.Platform != "linux/"+runtime.GOARCH {
		t.Errorf("regwire version in the image: %+v, want %s on linux/%s", v, version, runtime.GOARCH)
	}
	t.Logf("the image ran as uid %d: %s", info.Spec.Process.User.UID, strings.TrimSpace(out))
}
