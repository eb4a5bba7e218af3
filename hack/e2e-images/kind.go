package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// KindBaseImage is the kind node base image: what kind's images/base Dockerfile builds
// (kindest/base), assembled from Debian's packages, kind's own files and containerd 2,
// crictl and the CNI plugins built from the Go module proxy. kind's node-image builder
// takes it as --base-image.
const KindBaseImage = "regwire-e2e/kind-base:bookworm"

// kindPackages are the Debian packages of kind's base image (images/base/Dockerfile), less
// those for storage drivers the suite does not use (nfs, iscsi, fuse-overlayfs), plus
// Debian's runc (kind builds its own) and dbus for systemd.
var kindPackages = []string{
	"systemd", "systemd-sysv", "dbus", "conntrack", "iptables", "nftables", "iproute2", "ethtool",
	"util-linux", "mount", "kmod", "libseccomp2", "pigz", "bash", "ca-certificates", "curl", "jq",
	"procps", "runc",
}

// kindBinaries are the programs of bin/kind-node that the base image carries.
var kindBinaries = []string{"containerd", "containerd-shim-runc-v2", "ctr", "crictl"}

// kindBase builds kind-base.tar: the root filesystem (one layer) as kind's Dockerfile
// leaves it, and its entrypoint.
func kindBase(out, mirror, files, bin string) error {
	if bin == "" {
		return fmt.Errorf("--kind-node-bin is required with --kind-base-files")
	}
	r := recipe{Suite: "bookworm", Mirror: mirror, Include: kindPackages}
	inputs, err := treeKey(files, filepath.Join(bin, "cni"))
	if err != nil {
		return err
	}
	for _, b := range kindBinaries {
		k, err := treeKey(filepath.Join(bin, b))
		if err != nil {
			return err
		}
		inputs += " " + k
	}
	rootfs := filepath.Join(out, "kind-rootfs.tar")
	if err := ensure(rootfs, r.key()+" "+inputs, func(tmp string) error {
		return debootstrap(r, tmp, func(dir string) error { return kindify(dir, files, bin) })
	}); err != nil {
		return err
	}
	key, err := fileKey(rootfs)
	if err != nil {
		return err
	}
	return ensure(filepath.Join(out, "kind-base.tar"), key, func(tmp string) error {
		return writeImage(tmp, KindBaseImage, rootfs, nil, v1.Config{
			Env:        []string{"container=docker"},
			Entrypoint: []string{"/usr/local/bin/entrypoint", "/sbin/init"},
			StopSignal: "SIGRTMIN+3",
		})
	})
}

// kindify does to a Debian root filesystem what kind's base Dockerfile does: kind's files,
// the binaries, the systemd units enabled and the ones kind turns off, and the CRI base spec.
func kindify(dir, files, bin string) error {
	copies := []struct {
		from, to string
		mode     os.FileMode
	}{
		{"usr/local/bin", "usr/local/bin", 0o755},
		{"kind", "kind", 0o644},
		{"kind/bin", "kind/bin", 0o755},
		{"LICENSES", "LICENSES", 0o644},
		{"etc", "etc", 0o644},
	}
	for _, c := range copies {
		if err := copyTree(filepath.Join(files, c.from), filepath.Join(dir, c.to), c.mode); err != nil {
			return err
		}
	}
	for _, b := range kindBinaries {
		if err := copyFile(filepath.Join(bin, b), filepath.Join(dir, "usr/local/bin", b), 0o755); err != nil {
			return err
		}
	}
	if err := copyTree(filepath.Join(bin, "cni"), filepath.Join(dir, "opt/cni/bin"), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "kind"), 0o755); err != nil {
		return err
	}
	// The Dockerfile's cleanup of systemd units that make no sense in a container.
	for _, pattern := range []string{
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"lib/systemd/system/multi-user.target.wants/*",
		"etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*",
		"lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*",
		"lib/systemd/system/basic.target.wants/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	j, err := os.OpenFile(filepath.Join(dir, "etc/systemd/journald.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = j.WriteString("ReadKMsg=no\n")
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "sbin/init"))
	if err := os.Symlink("/usr/lib/systemd/systemd", filepath.Join(dir, "sbin/init")); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service"},
		{"mask", "systemd-binfmt.service"},
	} {
		cmd := exec.Command("systemctl", append([]string{"--root=" + dir}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, b)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc/kubernetes/manifests"), 0o755); err != nil {
		return err
	}
	return criBaseSpec(dir, bin)
}

// criBaseSpec writes /etc/containerd/cri-base.json as kind does: containerd's default OCI
// spec with kind's createContainer hook and without rlimits.
func criBaseSpec(dir, bin string) error {
	b, err := exec.Command(filepath.Join(bin, "ctr"), "oci", "spec").Output()
	if err != nil {
		return fmt.Errorf("ctr oci spec: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	hooks, _ := spec["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
	}
	create, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(create, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	spec["hooks"] = hooks
	if p, ok := spec["process"].(map[string]any); ok {
		delete(p, "rlimits")
	}
	out, err := json.MarshalIndent(spec, "", "    ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "etc/containerd/cri-base.json"), out, 0o644)
}

func copyTree(from, to string, mode os.FileMode) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		target := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(p, target, mode)
	})
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	_ = os.Remove(to)
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(to, mode)
}

// treeKey hashes every file under the directories: names and contents.
func treeKey(dirs ...string) (string, error) {
	h := sha256.New()
	for _, d := range dirs {
		var paths []string
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				paths = append(paths, p)
			}
			return err
		})
		if err != nil {
			return "", err
		}
		sort.Strings(paths)
		for _, p := range paths {
			rel, _ := filepath.Rel(d, p)
			_, _ = io.WriteString(h, rel+"\x00")
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			_ = f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
