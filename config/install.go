// Package config embeds the kustomize tree (crd, rbac, manager, default) so that the
// binary can build the same install `kubectl apply -k config/default` would, with the
// image it is told to run.
package config

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/internal/manifest"
)

//go:embed default manager rbac crd/kustomization.yaml crd/bases
var tree embed.FS

//go:embed admission/mirror-use.yaml
var mirrorUse []byte

// MirrorUsePolicy returns the optional ValidatingAdmissionPolicy and its binding
// (config/admission) that let only users granted the verb use on a RegistryMirror create
// ImageSyncs naming it.
func MirrorUsePolicy() ([]*unstructured.Unstructured, error) { return Decode(mirrorUse) }

// DefaultImage is the manager image config/manager names: the release dist/install.yaml
// and the chart install (the Makefile's RELEASE; a test keeps the three in step).
const DefaultImage = "ghcr.io/regwire/regwire:v0.1.0"

// Install builds config/default with the manager running image (name:tag or name@digest;
// "" keeps DefaultImage), and the manager's --agent-image set to the same image, so that
// the node agents run exactly what the manager runs.
func Install(image string) ([]*unstructured.Unstructured, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := tree.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/config", p), b)
	})
	if err != nil {
		return nil, err
	}
	overlay := "resources:\n  - ../default\n"
	if image != "" {
		name, tag, digest := splitImage(image)
		overlay += fmt.Sprintf("images:\n  - name: ghcr.io/regwire/regwire\n    newName: %s\n", name)
		if digest != "" {
			overlay += fmt.Sprintf("    digest: %s\n", digest)
		} else {
			overlay += fmt.Sprintf("    newTag: %s\n", tag)
		}
	}
	if err := mem.WriteFile("/config/install/kustomization.yaml", []byte(overlay)); err != nil {
		return nil, err
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/config/install")
	if err != nil {
		return nil, fmt.Errorf("kustomize build config/default: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(y, &u.Object); err != nil {
			return nil, err
		}
		if image != "" && u.GetKind() == "Deployment" {
			setAgentImage(u, image)
		}
		out = append(out, u)
	}
	return out, nil
}

// Decode reads a stream of objects (YAML or JSON documents, as kubectl takes them), such
// as dist/install.yaml or a rendered chart.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	objs, err := manifest.Objects(data)
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		out = append(out, &unstructured.Unstructured{Object: o})
	}
	return out, nil
}

// splitImage splits name[:tag][@digest]; the tag defaults to latest.
func splitImage(image string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	if tag == "" {
		tag = "latest"
	}
	return name, tag, digest
}

// setAgentImage makes the manager run the agent DaemonSet with image.
func setAgentImage(deploy *unstructured.Unstructured, image string) {
	cs, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	for i := range cs {
		c, _ := cs[i].(map[string]any)
		args, _, _ := unstructured.NestedStringSlice(c, "args")
		args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--agent-image=") })
		_ = unstructured.SetNestedStringSlice(c, append(args, "--agent-image="+image), "args")
		cs[i] = c
	}
	_ = unstructured.SetNestedSlice(deploy.Object, cs, "spec", "template", "spec", "containers")
}
