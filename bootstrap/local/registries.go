package local

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/internal/imagebuild"
	"github.com/regwire/regwire/internal/test/nexusemulator"
)

// registries are the embedded stand-ins the demo runs instead of Docker: "Nexus" (the Nexus
// emulator, nexusemulator: its REST API for provisioning and its docker repositories, over TLS
// with the bootstrap's certificate, content in memory) and "upstream" (a plain registry
// seeded with a demo image, standing in for Docker Hub).
type registries struct {
	// nexusAddr and upstreamAddr are 127.0.0.1:port.
	nexusAddr, upstreamAddr string
	ca                      []byte
	user, password          string
	servers                 []*http.Server
}

// demoUser is the demo Nexus's admin user.
const demoUser = "admin"

func startRegistries(ctx context.Context, stateDir string) (_ *registries, retErr error) {
	r := &registries{user: demoUser}
	defer func() {
		if retErr != nil {
			r.stop()
		}
	}()
	pki, err := bootstrap.EnsurePKI(filepath.Join(stateDir, bootstrap.TLSDir), bootstrap.PKIOptions{
		DNSNames: []string{"nexus.local"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return nil, err
	}
	r.ca = pki.CA
	if r.password, err = demoPassword(filepath.Join(stateDir, "nexus-password")); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(stateDir, bootstrap.TLSDir, bootstrap.ServerCertFile), filepath.Join(stateDir, bootstrap.TLSDir, bootstrap.ServerKeyFile))
	if err != nil {
		return nil, err
	}
	quiet := log.New(io.Discard, "", 0)
	// The demo's RegistryMirror provisions my-docker with path-based routing, so images
	// are 127.0.0.1:<port>/my-docker/busybox as they would be nexus.local/my-docker/busybox.
	if r.nexusAddr, err = r.serve(nexusemulator.New(r.password), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil {
		return nil, err
	}
	if r.upstreamAddr, err = r.serve(registry.New(registry.Logger(quiet)), nil); err != nil {
		return nil, err
	}
	if err := seedUpstream(ctx, r.upstreamAddr); err != nil {
		return nil, fmt.Errorf("seeding the upstream registry: %w", err)
	}
	return r, nil
}

// serve runs h on a free loopback port.
func (r *registries) serve(h http.Handler, tc *tls.Config) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	r.servers = append(r.servers, s)
	go func() { _ = s.Serve(l) }()
	return l.Addr().String(), nil
}

func (r *registries) stop() {
	for _, s := range r.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
	}
}

// demoPassword reads the demo Nexus password from path, or makes one (0600).
func demoPassword(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	pw := hex.EncodeToString(buf)
	return pw, os.WriteFile(path, []byte(pw+"\n"), 0o600)
}

// demoTags are the tags the upstream registry holds, as the ImageSync sample asks.
var demoTags = []string{"1.36", "latest"}

// seedUpstream pushes a small two-platform image as library/busybox under demoTags.
func seedUpstream(ctx context.Context, addr string) error {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		layer := static.NewLayer([]byte("regwire demo layer for linux/"+arch+"\n"), types.OCILayer)
		ociImage := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
		img, err := imagebuild.Image(ociImage, []v1.Layer{layer}, func(cf *v1.ConfigFile) { cf.OS, cf.Architecture = "linux", arch })
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	for _, tag := range demoTags {
		ref, err := name.ParseReference(addr+"/library/busybox:"+tag, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
			return err
		}
	}
	return nil
}
