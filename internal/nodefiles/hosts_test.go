package nodefiles_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/hostsfile"
	"github.com/regwire/regwire/internal/nodefiles"
)

const etcHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"

var nexusAlias = []hostsfile.Entry{{IP: "127.0.0.1", Hostnames: []string{"nexus.local"}}}

func TestApplyHostsFileAddsAndRemovesItsBlock(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(p, []byte(etcHosts), 0o640); err != nil {
		t.Fatal(err)
	}
	changed, err := nodefiles.ApplyHostsFile(p, nexusAlias)
	if err != nil || !changed {
		t.Fatalf("ApplyHostsFile = %v, %v", changed, err)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), etcHosts) || !strings.Contains(string(b), "127.0.0.1\tnexus.local\n") {
		t.Errorf("hosts file:\n%s", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the original 0640", fi.Mode().Perm())
	}
	if changed, err := nodefiles.ApplyHostsFile(p, nexusAlias); err != nil || changed {
		t.Errorf("second apply changed=%v err=%v, want no change", changed, err)
	}
	if _, err := nodefiles.ApplyHostsFile(p, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != etcHosts {
		t.Errorf("after removal:\n%q\nwant\n%q", b, etcHosts)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*regwire-tmp")); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// TestApplyHostsFileRewritesABindMountedFile reproduces /etc/hosts in a container, a
// single-file bind mount that cannot be renamed over. Needs root (CI runs as root).
func TestApplyHostsFileRewritesABindMountedFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test bind-mounts a temporary file and needs root: run `sudo go test ./internal/nodefiles/` (CI runs as root)")
	}
	dir := t.TempDir()
	backing, mountpoint := filepath.Join(dir, "backing"), filepath.Join(dir, "hosts")
	for _, p := range []string{backing, mountpoint} {
		if err := os.WriteFile(p, []byte(etcHosts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("mount", "--bind", backing, mountpoint).CombinedOutput(); err != nil {
		t.Fatalf("mount --bind: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmount(t, mountpoint) })
	if changed, err := nodefiles.ApplyHostsFile(mountpoint, nexusAlias); err != nil || !changed {
		t.Fatalf("ApplyHostsFile on a bind mount = %v, %v", changed, err)
	}
	// The write must reach the mounted file, i.e. the backing file.
	b, err := os.ReadFile(backing)
	if err != nil || !strings.Contains(string(b), "nexus.local") {
		t.Errorf("backing file not updated (%v):\n%s", err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*regwire-tmp")); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

// TestApplyHostsFileRewritesAFileMountedOnAReadOnlyFileSystem is the agent pod's case: its
// hostPath /etc/hosts is a file mounted into a read-only root file system, so not even the
// temporary file can be made next to it.
func TestApplyHostsFileRewritesAFileMountedOnAReadOnlyFileSystem(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts and needs root: run `sudo go test ./internal/nodefiles/` (CI runs as root)")
	}
	dir := t.TempDir()
	ro, backing := filepath.Join(dir, "ro"), filepath.Join(dir, "backing")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(ro, "hosts")
	for _, p := range []string{backing, hosts} {
		if err := os.WriteFile(p, []byte(etcHosts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v\n%s", args, err, out)
		}
	}
	mount("--bind", ro, ro)
	t.Cleanup(func() { unmount(t, ro) })
	mount("-o", "remount,bind,ro", ro)
	mount("--bind", backing, hosts)
	t.Cleanup(func() { unmount(t, hosts) })
	if err := os.WriteFile(filepath.Join(ro, "probe"), nil, 0o644); err == nil {
		t.Fatal("the directory is writable; the test would prove nothing")
	}
	if changed, err := nodefiles.ApplyHostsFile(hosts, nexusAlias); err != nil || !changed {
		t.Fatalf("ApplyHostsFile on a file in a read-only directory = %v, %v", changed, err)
	}
	if b, err := os.ReadFile(backing); err != nil || !strings.Contains(string(b), "nexus.local") {
		t.Errorf("backing file not updated (%v):\n%s", err, b)
	}
}

// unmount undoes a mount the test made. A process this test binary forks in another test
// holds a copy of every open file until it execs, so "target is busy" may last a moment:
// it is tried again for a while, and a mount still there is an error.
func unmount(t *testing.T, path string) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, err = exec.Command("umount", path).CombinedOutput(); err == nil {
			return
		}
		if !strings.Contains(string(out), "busy") || time.Now().After(deadline) {
			break
		}
	}
	t.Errorf("umount %s: %v\n%s", path, err, out)
}
