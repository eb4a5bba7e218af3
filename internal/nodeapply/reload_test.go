package nodeapply_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeapply"
)

// TestCRIOGetsSIGHUPAfterItsFilesChanged runs a process that a private proc root names
// crio (the machine's /proc does not, so no other test's reload reaches it) and checks
// that the reload sends it SIGHUP (which CRI-O answers by reloading its registries), that
// other runtimes' changes send nothing, and that other processes are left alone.
func TestCRIOGetsSIGHUPAfterItsFilesChanged(t *testing.T) {
	t.Parallel()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal("sleep is missing (coreutils)")
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fake-crio")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	other := exec.Command(sleep, "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	procRoot := t.TempDir()
	for pid, comm := range map[int]string{cmd.Process.Pid: "crio", other.Process.Pid: "sleep"} {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reload := nodeapply.ReloadCRIO(procRoot)
	if err := reload(context.Background(), v1alpha1.RuntimeContainerd); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("a containerd change signalled crio: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := reload(context.Background(), v1alpha1.RuntimeCRIO); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGHUP {
			t.Fatalf("crio ended with %v, want SIGHUP", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("crio got no SIGHUP")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process not named crio was signalled: %v", err)
	}
}
