package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// NginxBinary finds nginx (Debian's package; `.ci/run` installs it).
func NginxBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("nginx")
	if err != nil {
		for _, c := range []string{"/usr/sbin/nginx", "/sbin/nginx"} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		t.Fatal("nginx is missing: install it with `apt-get install -y nginx` (.ci/run does)")
	}
	return p
}

// Nginx is an nginx process started by a test.
type Nginx struct {
	// Log holds nginx's error log (stderr).
	Log *bytes.Buffer
}

// CheckNginx runs `nginx -t` on conf and returns its output.
func CheckNginx(t testing.TB, conf string) (string, error) {
	t.Helper()
	out, err := exec.Command(NginxBinary(t), "-t", "-p", filepath.Dir(conf), "-c", conf).CombinedOutput()
	return string(out), err
}

// StartNginx runs nginx in the foreground with conf (whose pid and temp paths must point
// into a test directory) until the test ends, and waits until addr accepts connections.
func StartNginx(t testing.TB, conf, addr string) *Nginx {
	t.Helper()
	if out, err := CheckNginx(t, conf); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	n := &Nginx{Log: &bytes.Buffer{}}
	cmd := exec.Command(NginxBinary(t), "-p", filepath.Dir(conf), "-c", conf, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = n.Log, n.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGQUIT is nginx's graceful stop; the process group takes the workers too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("nginx log:\n%s", n.Log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return n
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("nginx did not listen on %s: %w\n%s", addr, err, n.Log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // only its port was wanted
	return l.Addr().String()
}
