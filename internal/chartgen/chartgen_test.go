package chartgen_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/internal/chartgen"
)

// TestTheChartIsWhatConfigGenerates: charts/regwire is exactly what config/ generates,
// file for file; a change to either side alone fails here (make chart brings them
// together).
func TestTheChartIsWhatConfigGenerates(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	dir := filepath.Join(root, chartgen.Dir)
	chart, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		t.Fatalf("%v: run make chart", err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil || meta.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %v", err)
	}
	monitoring, err := chartgen.Monitoring(root)
	if err != nil {
		t.Fatal(err)
	}
	want, err := chartgen.Generate(meta.AppVersion, monitoring)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		onDisk = append(onDisk, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(onDisk)
	if names := chartgen.Names(want); !slices.Equal(names, onDisk) {
		t.Errorf("chart files %v, config/ generates %v: run make chart", onDisk, names)
	}
	for _, name := range chartgen.Names(want) {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil && !bytes.Equal(got, want[name]) {
			t.Errorf("%s differs from what config/ generates: run make chart", name)
		}
	}
}

// TestAChangeOnOneSideAloneIsCaught: the comparison above sees a change in config/ (here
// one more manager argument) that the chart lacks.
func TestAChangeOnOneSideAloneIsCaught(t *testing.T) {
	t.Parallel()
	monitoring, err := chartgen.Monitoring(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	a, err := chartgen.Generate("v0.1.0", monitoring)
	if err != nil {
		t.Fatal(err)
	}
	monitoring["dashboard.json"] = append(slices.Clone(monitoring["dashboard.json"]), ' ')
	b, err := chartgen.Generate("v0.1.0", monitoring)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a["files/dashboard.json"], b["files/dashboard.json"]) {
		t.Error("a changed dashboard generated the same chart")
	}
	c, err := chartgen.Generate("v0.2.0", monitoring)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a["Chart.yaml"], c["Chart.yaml"]) {
		t.Error("another release generated the same Chart.yaml")
	}
}
