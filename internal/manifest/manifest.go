// Package manifest splits the files users write — YAML or JSON, several documents to a
// file, as kubectl takes them — into their documents. It links no Kubernetes client
// library: the lean build of regwire sync reads its files with it.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one document of a stream.
type Document struct {
	// Index is the document's position in the stream, from 1 (empty ones counted).
	Index int
	// Raw is the document as written.
	Raw []byte
}

// Split returns the documents of a YAML or JSON stream that hold something: empty
// documents and those of comments only are left out.
func Split(data []byte) ([]Document, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []Document
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if !onlyComments(raw) {
			out = append(out, Document{Index: i, Raw: raw})
		}
	}
}

// Objects decodes every document of a stream into a map, as unstructured.Unstructured
// holds an object.
func Objects(data []byte) ([]map[string]any, error) {
	docs, err := Split(data)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(docs))
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(d.Raw, &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", d.Index, err)
		}
		if len(m) > 0 {
			out = append(out, m)
		}
	}
	return out, nil
}

// onlyComments says whether a document holds nothing but blank lines, comments and
// document markers.
func onlyComments(doc []byte) bool {
	for line := range bytes.SplitSeq(doc, []byte("\n")) {
		l := bytes.TrimSpace(line)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}
