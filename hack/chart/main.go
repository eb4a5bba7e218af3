// Command chart writes the Helm chart charts/regwire from config/ (internal/chartgen):
// go run ./hack/chart --app-version v0.1.0 (make chart).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/regwire/regwire/internal/chartgen"
)

func main() {
	appVersion := flag.String("app-version", "", "the release the chart installs (its image tag by default), e.g. v0.1.0")
	root := flag.String("root", ".", "the repository's root")
	flag.Parse()
	if *appVersion == "" {
		fmt.Fprintln(os.Stderr, "chart: --app-version is required")
		os.Exit(2)
	}
	if err := write(*root, *appVersion); err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

func write(root, appVersion string) error {
	monitoring, err := chartgen.Monitoring(root)
	if err != nil {
		return err
	}
	files, err := chartgen.Generate(appVersion, monitoring)
	if err != nil {
		return err
	}
	dir := filepath.Join(root, chartgen.Dir)
	if err := os.RemoveAll(dir); err != nil { // files that are no longer generated go too
		return err
	}
	for _, name := range chartgen.Names(files) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil { // a source tree, readable by all
			return err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil { //nolint:gosec // a source file, readable by all
			return err
		}
	}
	fmt.Printf("wrote %d files into %s\n", len(files), dir)
	return nil
}
