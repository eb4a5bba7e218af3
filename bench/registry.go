package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/regwire/regwire/internal/test/registry"
)

// benchRegistry is a CNCF distribution registry on loopback with its storage on tmpfs,
// configured as distribution's own default configuration is (blob descriptors cached in
// memory), over HTTPS.
type benchRegistry struct {
	bin, dir, addr string
	tls            *loopbackTLS
	proc           *registry.Process
}

// startRegistries starts the source and the target registry under work, over HTTPS with a
// certificate from a new private CA that this process, and every peer it starts, trusts.
func startRegistries(bin, work string) (src, dst *benchRegistry, err error) {
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
func startRegistry(bin, dir, addr string, t *loopbackTLS) (*benchRegistry, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	p, err := registry.Start(bin, registry.Config{Dir: dir, Addr: addr, LogLevel: "error", CertFile: t.cert, KeyFile: t.key,
		InMemoryBlobDescriptors: true, Probe: &http.Client{Transport: t.transport()}, Output: &bytes.Buffer{}})
	if err != nil {
		return nil, err
	}
	return &benchRegistry{bin: bin, dir: dir, addr: p.Addr, tls: t, proc: p}, nil
}

func (r *benchRegistry) stop() { r.proc.Stop() }

// reset stops the registry, wipes its storage and starts it again on the same port.
func (r *benchRegistry) reset() (*benchRegistry, error) {
	r.stop()
	return startRegistry(r.bin, r.dir, r.addr, r.tls)
}

// cpu is the CPU time (user + system) the registry process has used so far.
func (r *benchRegistry) cpu() time.Duration { return r.proc.CPU() }
