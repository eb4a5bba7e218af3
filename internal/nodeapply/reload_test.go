package nodeapply_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeapply"
)

// fakeCRIOEnv makes this test binary a stand-in for CRI-O: it waits for SIGHUP and exits
// with reloadedCode when it comes. (A plain sleep would do, but inherits SIGHUP ignored
// when the tests run under nohup; a Go program that asks for SIGHUP gets it either way.)
const (
	fakeCRIOEnv  = "REGWIRE_FAKE_CRIO"
	reloadedCode = 42
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeCRIOEnv) != "" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		fmt.Println("ready")
		select {
		case <-hup:
			os.Exit(reloadedCode)
		case <-time.After(time.Minute):
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

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
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fakeCRIOEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the stand-in for CRI-O did not start: %q %v", line, err)
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
		if !errors.As(err, &exit) || exit.ExitCode() != reloadedCode {
			t.Fatalf("crio ended with %v, want the exit of a SIGHUP received", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("crio got no SIGHUP")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process not named crio was signalled: %v", err)
	}
}
