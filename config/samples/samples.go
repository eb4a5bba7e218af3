// Package samples embeds the example objects of config/samples, which `make demo` applies
// and the API tests check against the real API server.
package samples

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/regwire/regwire/internal/manifest"
)

//go:embed *.yaml
var files embed.FS

// Object is one sample object and the file it came from.
type Object struct {
	File   string
	Object *unstructured.Unstructured
}

// All returns every sample object, in file order (kustomization.yaml excluded).
func All() ([]Object, error) { return Load(files) }

// Load reads every *.yaml file of fsys but kustomization.yaml as a stream of objects.
func Load(fsys fs.FS) ([]Object, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Object
	for _, name := range names {
		if path.Base(name) == "kustomization.yaml" {
			continue
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		objs, err := manifest.Objects(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, o := range objs {
			out = append(out, Object{File: name, Object: &unstructured.Unstructured{Object: o}})
		}
	}
	return out, nil
}
