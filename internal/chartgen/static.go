package chartgen

import (
	"embed"
	"io/fs"
	"strings"
)

// staticFiles are the chart's files that do not come from an object of config/default:
// Chart.yaml, values.yaml, values.schema.json (which makes Helm refuse values the chart
// does not know, and values of the wrong type: a misspelt key would otherwise be ignored
// without a word), the helpers, NOTES.txt and the optional monitoring templates. Each is
// a template with [[ ]] delimiters over the defaults read from config/, written under its
// path below static/.
//
//go:embed all:static
var staticFiles embed.FS

// static reads staticFiles: chart path → template text.
func static() (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(staticFiles, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFiles.ReadFile(p)
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, "static/")] = string(b)
		return nil
	})
	return out, err
}
