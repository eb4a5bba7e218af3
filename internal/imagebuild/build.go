// Package imagebuild builds regwire's container image without a Docker engine, with
// go-containerregistry (what `crane append` does): a scratch-style image per platform
// holding the static binary, CA certificates and a non-root user, and an OCI index of them.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUID is the user the image runs as (distroless's "nonroot").
const NonRootUID = 65532

// Options describe the image.
type Options struct {
	// Binaries maps platforms ("linux/amd64") to the static regwire binary built for them.
	Binaries map[string]string
	// CACertificates is a PEM bundle put at /etc/ssl/certs/ca-certificates.crt (the build
	// machine's, typically).
	CACertificates []byte
	// Version, Revision and Source go into the OCI labels.
	Version, Revision, Source string
	// Created is the image's creation time (default: the Unix epoch, for reproducible
	// images).
	Created time.Time
}

// Build returns the multi-platform index.
func Build(o Options) (v1.ImageIndex, error) {
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("no binaries to put in the image")
	}
	base, err := baseLayer(o.CACertificates)
	if err != nil {
		return nil, err
	}
	platforms := make([]string, 0, len(o.Binaries))
	for p := range o.Binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", p, err)
		}
		bin, err := os.ReadFile(o.Binaries[p])
		if err != nil {
			return nil, err
		}
		app, err := layer([]file{{name: "regwire", mode: 0o755, data: bin}})
		if err != nil {
			return nil, err
		}
		ociImage := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
		img, err := Image(ociImage, []v1.Layer{base, app}, func(cf *v1.ConfigFile) {
			cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
			cf.Created = v1.Time{Time: o.Created}
			cf.Config.Entrypoint = []string{"/regwire"}
			cf.Config.User = fmt.Sprintf("%d:%d", NonRootUID, NonRootUID)
			cf.Config.WorkingDir = "/"
			cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
			cf.Config.Labels = labels(o)
		})
		if err != nil {
			return nil, err
		}
		if img, err = mutate.CreatedAt(img, v1.Time{Time: o.Created}); err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	return mutate.Annotations(idx, labels(o)).(v1.ImageIndex), nil
}

// Image returns base with layers appended and its config file changed by configure: what
// every image built here without a Docker engine needs (regwire's, the test images, the
// benchmark's).
func Image(base v1.Image, layers []v1.Layer, configure func(*v1.ConfigFile)) (v1.Image, error) {
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	configure(cf)
	return mutate.ConfigFile(img, cf)
}

// LayerOf is a layer holding data, an uncompressed tar stream.
func LayerOf(data []byte, opts ...tarball.LayerOption) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, opts...)
}

func labels(o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "regwire",
		"org.opencontainers.image.description": "Wires Kubernetes clusters to private container registries",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.source":   o.Source,
	} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

type file struct {
	name string
	mode int64
	data []byte
	dir  bool
}

// baseLayer holds what a scratch image needs to run a Go program as a non-root user over
// TLS: /etc/passwd and /etc/group with nonroot, the CA bundle, and a writable /tmp.
func baseLayer(ca []byte) (v1.Layer, error) {
	files := []file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/passwd", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRootUID, NonRootUID)},
		{name: "etc/group", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", NonRootUID)},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700},
		{name: "tmp/", dir: true, mode: 0o1777},
	}
	if len(ca) > 0 {
		files = append(files, file{name: "etc/ssl/", dir: true, mode: 0o755}, file{name: "etc/ssl/certs/", dir: true, mode: 0o755},
			file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
	}
	return layer(files)
}

// layer makes a reproducible layer: fixed times, owners by name.
func layer(files []file) (v1.Layer, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if f.name == "home/nonroot/" {
			h.Uid, h.Gid = NonRootUID, NonRootUID
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !f.dir {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return LayerOf(b.Bytes(), tarball.WithMediaType(types.OCILayer))
}
