// Package samples embeds the example objects of config/samples, which `make demo` applies
// and the API tests check against the real API server.
package samples

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"bytes"
	"errors"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
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
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			out = append(out, Object{File: name, Object: u})
		}
	}
	return out, nil
}
