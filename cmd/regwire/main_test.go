package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/version"
)

// TestMain gives the tests, and the regwire processes they start, a cache directory of
// their own: `regwire sync` keeps its blob cache there.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "regwire-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The go command keeps its build cache under the same directory: tests that build
	// regwire keep using the machine's.
	if os.Getenv("GOCACHE") == "" {
		if user, err := os.UserCacheDir(); err == nil {
			_ = os.Setenv("GOCACHE", filepath.Join(user, "go-build"))
		}
	}
	_ = os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func execute(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestEverySubcommandExists(t *testing.T) {
	t.Parallel()
	for _, path := range [][]string{
		{"manager"}, {"agent"}, {"sync"}, {"node", "apply"}, {"bootstrap"}, {"bootstrap", "local"}, {"version"},
	} {
		c, _, err := newRootCommand().Find(path)
		if err != nil || c.Name() != path[len(path)-1] {
			t.Errorf("regwire %s: not found (%v)", strings.Join(path, " "), err)
		}
	}
}

func TestVersionPrintsJSON(t *testing.T) {
	t.Parallel()
	out, err := execute("version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var info version.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if info.Version != version.Version || info.Platform == "" {
		t.Errorf("info = %+v", info)
	}
	if _, err := execute("version", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("version -o yaml: err = %v, want one naming --output", err)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary builds regwire once for the tests that run it as a process.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "regwire-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "regwire")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// startControlPlane starts an API server for the test and writes an admin kubeconfig.
func startControlPlane(t *testing.T) (*controlplane.ControlPlane, string) {
	t.Helper()
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	kc, err := cp.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp, kubeconfig
}

// freePort returns a loopback address that is free right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestManagerServesProbesMetricsAndLeadsThenStopsOnSIGTERM runs the real binary against a
// real API server.
func TestManagerServesProbesMetricsAndLeadsThenStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	cp, kubeconfig := startControlPlane(t)
	bin := buildBinary(t)

	metrics, probes := freePort(t), freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "manager", "--metrics-bind-address", metrics, "--health-probe-bind-address", probes,
		"--leader-elect", "--leader-election-namespace", "default", "--leader-election-id", "regwire-test")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			t.Logf("manager killed at cleanup: %v", <-exited)
		}
	})

	get := func(url string) error {
		resp, err := http.Get(url) // a plain loopback probe
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
	waitFor := func(what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for err := cond(); err != nil; err = cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v\nmanager output:\n%s", what, err, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("healthz", func() error { return get("http://" + probes + "/healthz") })
	waitFor("readyz", func() error { return get("http://" + probes + "/readyz") })
	waitFor("metrics", func() error { return get("http://" + metrics + "/metrics") })

	c, err := client.New(cp.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("leader Lease", func() error {
		l := &coordinationv1.Lease{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "regwire-test"}, l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return errors.New("lease has no holder")
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("manager exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("manager did not stop within 30s of SIGTERM\n%s", logs.String())
	}
}

// TestLocalStackCleansUpAfterItsReaderIsGone reproduces `regwire bootstrap local | tee`
// interrupted by Ctrl-C: tee dies first, then regwire must still stop its API server.
func TestLocalStackCleansUpAfterItsReaderIsGone(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	state := t.TempDir()
	cmd := exec.Command(bin, "bootstrap", "local", "--state-dir", state)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// Read until the stack is up, then close the pipe like a dying tee.
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(seen.String(), "watching for changes") {
		if time.Now().After(deadline) {
			t.Fatalf("stack not up after 60s:\n%s\n%s", seen.String(), stderr.String())
		}
		n, err := stdout.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("reading output: %v\n%s\n%s", err, seen.String(), stderr.String())
		}
	}
	server := apiServerAddress(t, filepath.Join(state, "kubeconfig"))
	if conn, err := net.Dial("tcp", server); err != nil {
		t.Fatalf("API server %s not reachable while the stack runs: %v", server, err)
	} else {
		conn.Close()
	}
	_ = stdout.Close()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("regwire exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("regwire did not stop within 60s of Ctrl-C")
	}
	if conn, err := net.DialTimeout("tcp", server, time.Second); err == nil {
		conn.Close()
		t.Errorf("the API server at %s still runs after regwire stopped", server)
	}
}

// apiServerAddress reads host:port of the API server from a kubeconfig.
func apiServerAddress(t *testing.T, kubeconfig string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	t.Fatalf("no cluster in %s", kubeconfig)
	return ""
}
