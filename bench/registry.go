package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// registry is a CNCF distribution registry process on loopback with its storage on tmpfs,
// configured as distribution's own default configuration is (blob descriptors cached in
// memory).
type registry struct {
	bin, dir, addr string
	tls            *loopbackTLS
	cmd            *exec.Cmd
	log            bytes.Buffer
}

// startRegistries starts the source and the target registry under work, over HTTPS with a
// certificate from a new private CA that this process, and every peer it starts, trusts.
func startRegistries(bin, work string) (src, dst *registry, err error) {
	t, err := newLoopbackTLS(filepath.Join(work, "tls"))
	if err != nil {
		return nil, nil, err
	}
	if err := t.trust(); err != nil {
		return nil, nil, err
	}
	if src, err = startRegistry(filepath.Join(bin, "registry"), filepath.Join(work, "source"), "", t); err != nil {
		return nil, nil, err
	}
	if dst, err = startRegistry(filepath.Join(bin, "registry"), filepath.Join(work, "target"), "", t); err != nil {
		src.stop()
		return nil, nil, err
	}
	return src, dst, nil
}

// startRegistry serves an empty registry over HTTPS from dir (wiped first) on addr (a free
// loopback port when empty).
func startRegistry(bin, dir, addr string, t *loopbackTLS) (*registry, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr = l.Addr().String()
		_ = l.Close()
	}
	r := &registry{bin: bin, dir: dir, addr: addr, tls: t}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(dir, "data"), addr, t.cert, t.key)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	r.cmd = exec.Command(bin, "serve", cfgFile)
	r.cmd.Stdout, r.cmd.Stderr = &r.log, &r.log
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	client := &http.Client{Transport: t.transport()}
	defer client.CloseIdleConnections()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v2/", nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			return r, nil
		}
		if ctx.Err() != nil {
			r.stop()
			return nil, fmt.Errorf("registry in %s did not start: %w\n%s", dir, err, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *registry) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// reset stops the registry, wipes its storage and starts it again on the same port.
func (r *registry) reset() (*registry, error) {
	r.stop()
	return startRegistry(r.bin, r.dir, r.addr, r.tls)
}

// cpu is the CPU time (user + system) the registry process has used so far.
func (r *registry) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses): utime is the 12th, stime
	// the 13th, in clock ticks of 1/100 s.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
