package nodeagent_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/nodeagent"
)

// TestCRIOGetsSIGHUPAfterItsFilesChanged runs a process named crio and checks that the
// reload sends it SIGHUP (which CRI-O answers by reloading its registries), and that
// other runtimes' changes send nothing.
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
	crio := filepath.Join(t.TempDir(), "crio")
	if err := os.WriteFile(crio, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(crio, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	reload := nodeagent.ReloadCRIO("/proc")
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
}
