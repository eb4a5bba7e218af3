package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// k8sImage is one image kubeadm (or kind's containerd) runs on a node: a program built here
// and the names it goes by.
type k8sImage struct {
	refs []string
	// files are path in the image → path on disk.
	files map[string]string
	cfg   v1.Config
	// onRootfs puts the program on the kind root filesystem (for kube-proxy, which runs
	// iptables and conntrack); otherwise the image holds the program alone.
	onRootfs bool
}

// k8sImages are the images `kubeadm config images list` names for the pinned version, plus
// the sandbox image kind's containerd config names, built from bin/: kube-apiserver,
// kube-controller-manager, kube-scheduler and kube-proxy from k8s.io/kubernetes, etcd and
// CoreDNS at the versions kubeadm deploys, pause from Kubernetes' own pause.c.
func k8sImages(k8sBin, nodeBin, version string, required []string) ([]k8sImage, error) {
	byName := map[string]string{}
	for _, r := range required {
		repo := r[:strings.LastIndex(r, ":")]
		byName[repo[strings.LastIndex(repo, "/")+1:]] = r
	}
	bin := func(dir, prog string) map[string]string {
		return map[string]string{"usr/local/bin/" + prog: filepath.Join(dir, prog)}
	}
	var images []k8sImage
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		images = append(images, k8sImage{refs: []string{byName[c]}, files: bin(k8sBin, c)})
	}
	images = append(images,
		k8sImage{refs: []string{byName["kube-proxy"]}, files: bin(k8sBin, "kube-proxy"), onRootfs: true},
		k8sImage{refs: []string{byName["etcd"]}, files: bin(k8sBin, "etcd")},
		k8sImage{refs: []string{byName["coredns"]}, files: map[string]string{"coredns": filepath.Join(nodeBin, "coredns")},
			cfg: v1.Config{Entrypoint: []string{"/coredns"}, ExposedPorts: map[string]struct{}{"53/tcp": {}, "53/udp": {}}}},
		// kind's containerd config pins its own sandbox image; both names are the same pause.
		k8sImage{refs: []string{byName["pause"], "registry.k8s.io/pause:3.10"}, files: map[string]string{"pause": filepath.Join(nodeBin, "pause")},
			cfg: v1.Config{Entrypoint: []string{"/pause"}}},
	)
	for _, im := range images {
		for _, r := range im.refs {
			if r == "" {
				return nil, fmt.Errorf("kubeadm %s lists no image for one of the node's programs (%v)", version, required)
			}
		}
	}
	return images, nil
}

// writeK8sImages writes every image into one docker-archive at out.
func writeK8sImages(out, rootfs string, images []k8sImage) error {
	var base v1.Layer
	refs := map[name.Reference]v1.Image{}
	for _, im := range images {
		files := map[string][]byte{}
		for in, disk := range im.files {
			b, err := os.ReadFile(disk)
			if err != nil {
				return err
			}
			files[in] = b
		}
		layer, err := filesLayer(files)
		if err != nil {
			return err
		}
		layers := []v1.Layer{layer}
		if im.onRootfs {
			if base == nil {
				if base, err = tarball.LayerFromFile(rootfs); err != nil {
					return err
				}
			}
			layers = []v1.Layer{base, layer}
		}
		img, err := newImage(layers, im.cfg)
		if err != nil {
			return err
		}
		for _, r := range im.refs {
			tag, err := name.NewTag(r)
			if err != nil {
				return err
			}
			refs[tag] = img
		}
	}
	return tarball.MultiRefWriteToFile(out, refs)
}

// k8sImagesKey names the inputs of the archive: the programs' contents and the names.
func k8sImagesKey(rootKey string, images []k8sImage) (string, error) {
	var parts []string
	for _, im := range images {
		for _, disk := range im.files {
			sum, err := treeKey(disk)
			if err != nil {
				return "", err
			}
			parts = append(parts, fmt.Sprintf("%s=%s", strings.Join(im.refs, ","), sum))
		}
	}
	sort.Strings(parts)
	return rootKey + " " + strings.Join(parts, " "), nil
}
