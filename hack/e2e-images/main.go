// Command e2e-images builds the images the Docker end-to-end test runs, without a registry
// to pull from: a Debian root filesystem from debootstrap, and on it nginx (Debian's) and
// "Nexus" (hack/nexus-emulator), written as docker-archive tarballs for `docker load`.
// Outputs are kept in --out and rebuilt only when their inputs change: the root filesystem
// when its recipe does, an image when the root filesystem or the program in it does.
//
// Images are assembled with go-containerregistry: the root filesystem is one layer, the
// program another, with fixed timestamps, so the same inputs give the same image.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/regwire/regwire/internal/imagebuild"
)

// Image names the test loads.
const (
	NginxImage    = "regwire-e2e/nginx:bookworm"
	NexusImage    = "regwire-e2e/nexus:emulated"
	RegistryImage = "regwire-e2e/registry:3"
	BusyboxImage  = "regwire-e2e/busybox:1.36"
)

// registryConfig is the upstream registry's: the CNCF distribution registry on :5000,
// content on disk.
const registryConfig = `version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
`

// recipe is how the root filesystem is made; a change rebuilds it.
type recipe struct {
	Suite, Mirror string
	Include       []string
}

func (r recipe) key() string {
	return fmt.Sprintf("debootstrap --variant=minbase --include=%s %s %s", strings.Join(r.Include, ","), r.Suite, r.Mirror)
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "e2e-images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("e2e-images", flag.ContinueOnError)
	out := fs.String("out", "bin/e2e-images", "directory for the root filesystem and the image tarballs")
	emulator := fs.String("nexus-emulator", "", "the nexus-emulator binary (static, linux)")
	registry := fs.String("registry", "", "the distribution registry binary (static, linux) for the upstream image")
	mirror := fs.String("mirror", "", "Debian mirror for debootstrap (default: the machine's apt source)")
	kindFiles := fs.String("kind-base-files", "", "kind's images/base/files (from the kind module); with --kind-node-bin, builds the kind node base image")
	kindBin := fs.String("kind-node-bin", "", "directory with containerd, containerd-shim-runc-v2, ctr, crictl, cni/, coredns and pause (make kind-node-bin)")
	k8sBin := fs.String("k8s-bin", "", "directory with the Kubernetes binaries (kubeadm, kube-apiserver, …, etcd); with --kind-node-bin, builds the control-plane images")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *emulator == "" {
		return errors.New("--nexus-emulator is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *mirror == "" {
		m, err := aptMirror()
		if err != nil {
			return err
		}
		*mirror = m
	}
	r := recipe{Suite: "bookworm", Mirror: *mirror, Include: []string{"nginx-light", "curl", "ca-certificates", "busybox-static"}}
	rootfs := filepath.Join(*out, "rootfs.tar")
	if err := ensure(rootfs, r.key(), func(tmp string) error { return debootstrap(r, tmp, nil) }); err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	rootKey, err := fileKey(rootfs)
	if err != nil {
		return err
	}
	if err := ensure(filepath.Join(*out, "nginx.tar"), rootKey, func(tmp string) error {
		return writeImage(tmp, NginxImage, rootfs, nil, v1.Config{
			Cmd:          []string{"nginx", "-g", "daemon off;"},
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "443/tcp": {}},
			StopSignal:   "SIGQUIT",
		})
	}); err != nil {
		return fmt.Errorf("nginx image: %w", err)
	}
	bin, err := os.ReadFile(*emulator)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(bin)
	if *registry != "" {
		b, err := os.ReadFile(*registry)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(append(b, registryConfig...))
		if err := ensure(filepath.Join(*out, "registry.tar"), hex.EncodeToString(sum[:]), func(tmp string) error {
			return writeImage(tmp, RegistryImage, "", map[string][]byte{"usr/local/bin/registry": b, "etc/distribution/config.yml": []byte(registryConfig)}, v1.Config{
				Entrypoint:   []string{"/usr/local/bin/registry", "serve", "/etc/distribution/config.yml"},
				ExposedPorts: map[string]struct{}{"5000/tcp": {}},
			})
		}); err != nil {
			return fmt.Errorf("registry image: %w", err)
		}
	}
	if err := ensure(filepath.Join(*out, "busybox.tar"), rootKey, func(tmp string) error { return busybox(tmp, rootfs) }); err != nil {
		return fmt.Errorf("busybox image: %w", err)
	}
	if *kindFiles != "" {
		if err := kindBase(*out, *mirror, *kindFiles, *kindBin); err != nil {
			return fmt.Errorf("kind node base image: %w", err)
		}
	}
	if *k8sBin != "" {
		if err := controlPlaneImages(*out, *k8sBin, *kindBin); err != nil {
			return fmt.Errorf("control-plane images: %w", err)
		}
	}
	if err := ensure(filepath.Join(*out, "nexus.tar"), rootKey+" "+hex.EncodeToString(sum[:]), func(tmp string) error {
		return writeImage(tmp, NexusImage, rootfs, map[string][]byte{"usr/local/bin/nexus-emulator": bin}, v1.Config{
			Entrypoint:   []string{"/usr/local/bin/nexus-emulator"},
			ExposedPorts: map[string]struct{}{"8081/tcp": {}},
			Volumes:      map[string]struct{}{"/nexus-data": {}},
		})
	}); err != nil {
		return fmt.Errorf("nexus image: %w", err)
	}
	return nil
}

// ensure makes path with build unless path.key holds key already. build writes to a
// temporary path, renamed into place when it succeeds.
func ensure(path, key string, build func(tmp string) error) error {
	stamp := path + ".key"
	if b, err := os.ReadFile(stamp); err == nil && string(b) == key {
		if _, err := os.Stat(path); err == nil {
			fmt.Printf("e2e-images: %s is current\n", path)
			return nil
		}
	}
	start := time.Now()
	tmp := path + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := build(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	fmt.Printf("e2e-images: built %s in %s\n", path, time.Since(start).Round(time.Second))
	return os.WriteFile(stamp, []byte(key), 0o644)
}

// debootstrap builds the root filesystem, lets post change it (when not nil), and writes
// it as a tar to out.
func debootstrap(r recipe, out string, post func(dir string) error) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), "rootfs-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(r.Include, ","), r.Suite, dir, r.Mirror)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	fmt.Fprintf(os.Stderr, "e2e-images: %s (a minute or two)\n", r.key())
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap (apt-get install debootstrap): %w\n%s", err, log.String())
	}
	// Caches that only make the layer bigger.
	for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, _ := os.ReadDir(filepath.Join(dir, p))
		for _, e := range entries {
			if e.Name() != "lock" && e.Name() != "partial" {
				_ = os.RemoveAll(filepath.Join(dir, p, e.Name()))
			}
		}
	}
	if post != nil {
		if err := post(dir); err != nil {
			return err
		}
	}
	tarCmd := exec.Command("tar", "--numeric-owner", "--sort=name", "--mtime=@0", "-C", dir, "-cf", out, ".")
	if b, err := tarCmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %w: %s", err, b)
	}
	return nil
}

// writeImage writes a docker-archive of ref: the root filesystem layer, a layer with files
// (path → content, executable) when there are any, and cfg.
func writeImage(out, ref, rootfs string, files map[string][]byte, cfg v1.Config) error {
	var layers []v1.Layer
	if rootfs != "" {
		base, err := tarball.LayerFromFile(rootfs)
		if err != nil {
			return err
		}
		layers = append(layers, base)
	}
	if len(files) > 0 {
		l, err := filesLayer(files)
		if err != nil {
			return err
		}
		layers = append(layers, l)
	}
	img, err := newImage(layers, cfg)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}

func filesLayer(files map[string][]byte) (v1.Layer, error) {
	return tarLayer(func(tw *tar.Writer) error {
		dirs := map[string]bool{}
		for p := range files {
			for d := filepath.Dir(p); d != "." && !dirs[d]; d = filepath.Dir(d) {
				dirs[d] = true
			}
		}
		for _, d := range slices.Sorted(maps.Keys(dirs)) {
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
				return err
			}
		}
		for _, p := range slices.Sorted(maps.Keys(files)) {
			if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(files[p])), ModTime: epoch}); err != nil {
				return err
			}
			if _, err := tw.Write(files[p]); err != nil {
				return err
			}
		}
		return nil
	})
}

// epoch is every timestamp the images carry, so that the same inputs give the same image.
var epoch = time.Unix(0, 0).UTC()

// tarLayer is the layer write puts into a tar.
func tarLayer(write func(*tar.Writer) error) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := write(tw); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return imagebuild.LayerOf(buf.Bytes())
}

// newImage is a linux/amd64 image of layers with cfg, created at the epoch; cfg without a
// PATH gets the usual one.
func newImage(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	if !slices.ContainsFunc(cfg.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		cfg.Env = append(cfg.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return imagebuild.Image(empty.Image, layers, func(cf *v1.ConfigFile) {
		cf.OS, cf.Architecture = "linux", "amd64"
		cf.Created = v1.Time{Time: epoch}
		cf.Config = cfg
	})
}

// fileKey identifies a file by size and modification time (hashing a root filesystem of
// hundreds of megabytes on every run would cost more than it saves).
func fileKey(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %d %d", filepath.Base(path), fi.Size(), fi.ModTime().UnixNano()), nil
}

// aptMirror is the first Debian URI of the machine's apt sources.
func aptMirror() (string, error) {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for l := range strings.Lines(string(b)) {
			l = strings.TrimSpace(l)
			if v, ok := strings.CutPrefix(l, "URIs:"); ok {
				return strings.Fields(v)[0], nil
			}
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "deb" {
				return f[1], nil
			}
		}
	}
	return "", errors.New("no Debian mirror in the apt sources: pass --mirror")
}

// controlPlaneImages writes k8s-images.tar: the images kubeadm runs, named as
// `kubeadm config images list` names them for the kubeadm built here.
func controlPlaneImages(out, k8sBin, nodeBin string) error {
	kubeadm := filepath.Join(k8sBin, "kubeadm")
	v, err := exec.Command(kubeadm, "version", "-o", "short").Output()
	if err != nil {
		return fmt.Errorf("kubeadm version: %w", err)
	}
	version := strings.TrimSpace(string(v))
	list, err := exec.Command(kubeadm, "config", "images", "list", "--kubernetes-version", version).Output()
	if err != nil {
		return fmt.Errorf("kubeadm config images list: %w", err)
	}
	images, err := k8sImages(k8sBin, nodeBin, version, strings.Fields(string(list)))
	if err != nil {
		return err
	}
	// The programs are the versions kubeadm asks for (a kubeadm bump needs new pins).
	for _, c := range []struct{ prog, flag, image string }{
		{filepath.Join(k8sBin, "etcd"), "--version", "etcd"},
		{filepath.Join(nodeBin, "coredns"), "-version", "coredns"},
		{filepath.Join(nodeBin, "pause"), "-v", "pause"},
	} {
		out, err := exec.Command(c.prog, c.flag).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w", c.prog, c.flag, err)
		}
		var tag string
		for _, r := range strings.Fields(string(list)) {
			if strings.Contains(r, "/"+c.image+":") {
				tag = strings.TrimPrefix(r[strings.LastIndex(r, ":")+1:], "v")
				tag = strings.TrimSuffix(tag, "-0")
			}
		}
		if tag == "" || !strings.Contains(string(out), tag) {
			return fmt.Errorf("kubeadm %s wants %s %s, but %s says %q: pin that version", version, c.image, tag, filepath.Base(c.prog), strings.TrimSpace(string(out)))
		}
	}
	rootfs := filepath.Join(out, "kind-rootfs.tar")
	rootKey, err := fileKey(rootfs)
	if err != nil {
		return err
	}
	key, err := k8sImagesKey(rootKey, images)
	if err != nil {
		return err
	}
	return ensure(filepath.Join(out, "k8s-images.tar"), key, func(tmp string) error { return writeK8sImages(tmp, rootfs, images) })
}

// busybox writes a small image like Docker Hub's busybox: Debian's static busybox (taken
// from the root filesystem) as /bin/busybox, with the applets the test pod runs linked to it.
func busybox(out, rootfs string) error {
	f, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	var bin []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if path.Clean(h.Name) == "bin/busybox" || path.Clean(h.Name) == "usr/bin/busybox" {
			if bin, err = io.ReadAll(tr); err != nil {
				return err
			}
		}
	}
	if bin == nil {
		return errors.New("no busybox in the root filesystem (busybox-static)")
	}
	layer, err := tarLayer(func(tw *tar.Writer) error {
		headers := []*tar.Header{
			{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
			{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch},
			{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch},
		}
		for _, applet := range []string{"sh", "echo", "sleep", "cat", "ls"} {
			headers = append(headers, &tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: epoch})
		}
		for _, h := range headers {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if h.Typeflag == tar.TypeReg {
				if _, err := tw.Write(bin); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	img, err := newImage([]v1.Layer{layer}, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}})
	if err != nil {
		return err
	}
	tag, err := name.NewTag(BusyboxImage)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}
