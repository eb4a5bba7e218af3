// Command image builds regwire's container image without a Docker engine (`make image`):
// static binaries for each platform, put into a scratch-style image with
// internal/imagebuild, written as an OCI layout and, with --push, pushed to a registry.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/regwire/regwire/internal/imagebuild"
)

func main() {
	log.SetFlags(0)
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	var (
		version   = flag.String("version", "dev", "version stamped into the binary and the labels")
		commit    = flag.String("commit", "", "git commit stamped into the binary and the labels")
		source    = flag.String("source", "https://github.com/regwire/regwire", "org.opencontainers.image.source")
		platforms = flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms")
		out       = flag.String("out", "bin/image", "OCI layout directory to write")
		push      = flag.String("push", "", "also push to this reference (e.g. 127.0.0.1:5000/regwire:dev)")
		insecure  = flag.Bool("insecure", false, "allow plain HTTP for --push")
		caFile    = flag.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to put in the image")
		archive   = flag.String("docker-archive", "", "also write this machine's platform as a `docker load` archive, tagged --tag")
		tag       = flag.String("tag", "ghcr.io/regwire/regwire:dev", "the tag of --docker-archive")
	)
	flag.Parse()
	tmp, err := os.MkdirTemp("", "regwire-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins := map[string]string{}
	for _, p := range strings.Split(*platforms, ",") {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok {
			return fmt.Errorf("--platforms: %q is not os/arch", p)
		}
		bin := filepath.Join(tmp, "regwire-"+goos+"-"+goarch)
		log.Printf("building regwire %s for %s", *version, p)
		ldflags := fmt.Sprintf("-s -w -X github.com/regwire/regwire/internal/version.Version=%s -X github.com/regwire/regwire/internal/version.Commit=%s", *version, *commit)
		// The operator build leaves out the laptop commands (see cmd/regwire/main.go).
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "operator", "-ldflags", ldflags, "-o", bin, "./cmd/regwire")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build for %s: %w", p, err)
		}
		bins[p] = bin
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("--ca-certificates: %w (install Debian's ca-certificates, or point it at a bundle)", err)
	}
	idx, err := imagebuild.Build(imagebuild.Options{Binaries: bins, CACertificates: ca, Version: *version, Revision: *commit, Source: *source})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx); err != nil {
		return err
	}
	d, _ := idx.Digest()
	log.Printf("wrote %s (OCI layout), index %s", *out, d)
	if *archive != "" {
		if err := writeDockerArchive(idx, *archive, *tag); err != nil {
			return fmt.Errorf("--docker-archive: %w", err)
		}
		log.Printf("wrote %s (docker load -i %s gives %s)", *archive, *archive, *tag)
	}
	if *push != "" {
		var opts []name.Option
		if *insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(*push, opts...)
		if err != nil {
			return fmt.Errorf("--push: %w", err)
		}
		if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		log.Printf("pushed %s@%s", ref, d)
	}
	return nil
}

// writeDockerArchive writes the index's image for this machine's platform as a tarball
// `docker load` takes (Docker Engines before 25 load no OCI layout), tagged tag.
func writeDockerArchive(idx v1.ImageIndex, file, tag string) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH {
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			return tarball.WriteToFile(file, t, img)
		}
	}
	return fmt.Errorf("no %s/%s image built: add it to --platforms", runtime.GOOS, runtime.GOARCH)
}
