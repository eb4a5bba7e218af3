package imagebuild_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regwire/regwire/internal/imagebuild"
)

func TestBuildMakesAMultiPlatformNonRootImage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bins := map[string]string{}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		f := filepath.Join(dir, strings.ReplaceAll(p, "/", "-"))
		if err := os.WriteFile(f, []byte("binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[p] = f
	}
	opts := imagebuild.Options{Binaries: bins, CACertificates: []byte("-----BEGIN CERTIFICATE-----\n"), Version: "v1.2.3", Revision: "abc", Source: "https://example.com/regwire"}
	idx, err := imagebuild.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.String() != "linux/amd64" || im.Manifests[1].Platform.String() != "linux/arm64" {
		t.Fatalf("index manifests %+v", im.Manifests)
	}
	if im.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("index annotations %v", im.Annotations)
	}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/regwire" || cf.Architecture != m.Platform.Architecture ||
			cf.Config.Labels["org.opencontainers.image.source"] != "https://example.com/regwire" || cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
			t.Errorf("%s config %+v", m.Platform, cf.Config)
		}
		files := contents(t, img)
		if files["regwire"].mode != 0o755 || files["regwire"].data != "binary for "+m.Platform.String() {
			t.Errorf("%s: /regwire %+v", m.Platform, files["regwire"])
		}
		if !strings.Contains(files["etc/passwd"].data, "nonroot:x:65532:65532") || files["etc/ssl/certs/ca-certificates.crt"].data == "" {
			t.Errorf("%s: base files %v", m.Platform, files)
		}
	}
	// Reproducible: the same inputs give the same digest.
	again, _ := imagebuild.Build(opts)
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds differ: %s %s", d1, d2)
	}
}

type entry struct {
	mode int64
	data string
}

func contents(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	ls, _ := img.Layers()
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			out[h.Name] = entry{mode: h.Mode, data: string(b)}
		}
		_ = rc.Close()
	}
	return out
}
