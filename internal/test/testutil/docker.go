package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/regwire/regwire/internal/hostcaps"
)

// Docker is a private Docker engine for one test: its own dockerd (data root, exec root,
// socket, containerd namespace) inside its own network namespace, so that its bridges,
// published ports and iptables rules never touch the machine's. Commands that reach what
// it publishes run in that namespace (Command); the docker CLI reaches it through its
// socket (Env).
type Docker struct {
	// Host is the daemon's socket as DOCKER_HOST names it.
	Host string
	// Netns is the network namespace's path (/run/netns/<name>).
	Netns string
	// Env is what a docker CLI needs to use this engine and the Compose plugin: DOCKER_HOST,
	// DOCKER_CONFIG.
	Env []string
	// Log is dockerd's output.
	Log *SyncBuffer
	// Runtime names the OCI runtime containers run with: runc, or runc-hostcaps when the machine's
	// capability bounding set lacks what privileged containers are given.
	Runtime string
}

// DockerOptions tune StartDocker.
type DockerOptions struct {
	// RuncHostcaps is the path of the runc-hostcaps runtime wrapper (hack/runc-hostcaps), used when the
	// machine cannot grant every capability. Required on such machines.
	RuncHostcaps string
	// ComposePlugin is the docker-compose CLI plugin to install for this engine's clients
	// ("" for none).
	ComposePlugin string
	// Mounts bind-mounts host paths (values) over paths (keys) such as /etc/hosts or
	// /etc/docker/certs.d in a mount namespace of the engine's own; empty shares the
	// machine's.
	Mounts map[string]string
}

// StartDocker starts a private Docker engine, stopped and cleaned up (containers,
// networks, volumes, its directories and network namespace) when the test ends, pass or
// fail. It needs root and Debian's docker.io.
func StartDocker(t testing.TB, o DockerOptions) *Docker {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("a private Docker engine needs root (CI runs as root)")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatal("dockerd not found: apt-get install docker.io (.ci/run installs it)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("the docker CLI is not found: apt-get install docker.io")
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "regwire-" + hex.EncodeToString(suffix)
	// Unix socket paths are short: the exec root (containerd's socket lives there) and the
	// daemon's socket go under a short directory of their own.
	short, err := os.MkdirTemp("", "rwd")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &Docker{Host: "unix://" + filepath.Join(short, "docker.sock"), Netns: "/run/netns/" + name, Log: &SyncBuffer{}, Runtime: "runc"}
	config := filepath.Join(dir, "config")
	if err := os.MkdirAll(filepath.Join(config, "cli-plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	if o.ComposePlugin != "" {
		if err := os.Symlink(o.ComposePlugin, filepath.Join(config, "cli-plugins", "docker-compose")); err != nil {
			t.Fatal(err)
		}
	}
	d.Env = []string{"DOCKER_HOST=" + d.Host, "DOCKER_CONFIG=" + config}

	daemon := map[string]any{}
	missing, err := hostcaps.Missing()
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		if o.RuncHostcaps == "" {
			t.Fatalf("this machine's capability bounding set lacks %v, which Docker gives privileged containers: build hack/runc-hostcaps and pass it as DockerOptions.RuncHostcaps", missing)
		}
		daemon["runtimes"] = map[string]any{"runc-hostcaps": map[string]string{"path": o.RuncHostcaps}}
		daemon["default-runtime"] = "runc-hostcaps"
		d.Runtime = "runc-hostcaps"
		t.Logf("docker: this machine cannot grant %v; containers run with the runc-hostcaps runtime, which drops only those", missing)
	}
	b, _ := json.Marshal(daemon)
	daemonJSON := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(daemonJSON, b, 0o600); err != nil {
		t.Fatal(err)
	}

	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("lo up in %s: %v\n%s", name, err, out)
	}
	// nsenter enters the network namespace only: `ip netns exec` would also mount a new
	// /sys, without the cgroup mounts dockerd needs.
	argv := append(PrivateMounts(o.Mounts), "nsenter", "--net="+d.Netns, dockerd,
		"--config-file", daemonJSON,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(short, "x"),
		"--host", d.Host,
		"--pidfile", filepath.Join(short, "docker.pid"),
		"--containerd-namespace", name,
		"--containerd-plugins-namespace", name+"-plugins",
	)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = d.Log, d.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("starting dockerd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		d.clean(t)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		unmountUnder(t, dir)
		unmountUnder(t, short)
		_ = os.RemoveAll(short)
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
		if t.Failed() {
			t.Logf("dockerd log:\n%s", d.Log)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := d.Docker(context.Background(), "version", "--format", "{{.Server.Version}}"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within a minute: %v\n%s", err, d.Log)
		}
		select {
		case <-done:
			t.Fatalf("dockerd exited:\n%s", d.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return d
}

// Docker runs the docker CLI against this engine and returns its standard output.
func (d *Docker) Docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), d.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Run is Docker that fails the test on an error.
func (d *Docker) Run(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := d.Docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Command is a command in the engine's network namespace, with its environment: what it
// dials on 127.0.0.1 is what the engine publishes there.
func (d *Docker) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + d.Netns, name}, args...)...)
	cmd.Env = append(os.Environ(), d.Env...)
	return cmd
}

// clean removes every container, network and volume the test left.
func (d *Docker) clean(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if ids, err := d.Docker(ctx, "ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
		if _, err := d.Docker(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			t.Logf("removing containers: %v", err)
		}
	}
	if _, err := d.Docker(ctx, "network", "prune", "-f"); err != nil {
		t.Logf("removing networks: %v", err)
	}
	if _, err := d.Docker(ctx, "volume", "prune", "-f"); err != nil {
		t.Logf("removing volumes: %v", err)
	}
}

// unmountUnder lazily unmounts whatever is still mounted under dir (overlay layers of a
// daemon that did not stop cleanly), deepest first.
func unmountUnder(t testing.TB, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Logf("unmounting %s: %v", points[i], err)
		}
	}
}

// DialContext dials addr from inside the engine's network namespace: 127.0.0.1:443 is what
// the engine publishes there.
func (d *Docker) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return InNetns(d.Netns, func() (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
}

// Listen listens on addr inside the engine's network namespace: servers there are what
// the engine, and commands run with Command, reach.
func (d *Docker) Listen(network, addr string) (net.Listener, error) {
	return InNetns(d.Netns, func() (net.Listener, error) { return net.Listen(network, addr) })
}

// InNetns runs f on a thread of its own that entered the network namespace at netns,
// thrown away after (a goroutine that ends locked to its thread ends the thread), so that
// no other goroutine ever runs in the namespace. Sockets f makes stay in it.
func InNetns[T any](netns string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		var zero T
		ns, err := os.Open(netns)
		if err != nil {
			ch <- result{zero, err}
			return
		}
		defer func() { _ = ns.Close() }()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{zero, fmt.Errorf("entering %s: %w", netns, err)}
			return
		}
		v, err := f()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// PrivateMounts returns the command prefix that makes the command after it run in a mount
// namespace of its own with mounts (target: source) bind-mounted, e.g.
// append(PrivateMounts(m), "podman", "pull", ref). The machine's mounts never change.
// With no mounts it returns nil.
func PrivateMounts(mounts map[string]string) []string {
	if len(mounts) == 0 {
		return nil
	}
	script := ""
	for _, target := range slices.Sorted(maps.Keys(mounts)) {
		script += fmt.Sprintf("mount --bind %q %q && ", mounts[target], target)
	}
	return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script + `exec "$@"`, "sh"}
}

// Transport is an HTTP transport whose connections are made in the engine's network
// namespace (DialContext), trusting ca (PEM; nil for the system roots).
func (d *Docker) Transport(ca []byte) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	if ca != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr
}

// RemoveIfCreated removes path when the test ends if it does not exist now and is an empty
// directory then: Docker creates the host side of a bind mount that is missing (kind's
// nodes mount /lib/modules), and the test must leave the machine as it found it.
func RemoveIfCreated(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		return
	}
	t.Cleanup(func() {
		if entries, err := os.ReadDir(path); err == nil && len(entries) == 0 {
			if err := os.Remove(path); err != nil {
				t.Errorf("removing %s, which the test created: %v", path, err)
			}
		}
	})
}
