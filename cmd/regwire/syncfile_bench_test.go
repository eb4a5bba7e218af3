package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkReadSyncFile reads a file of 40 ImageSyncs, as `regwire sync -f` does first.
func BenchmarkReadSyncFile(b *testing.B) {
	var sb strings.Builder
	for i := range 40 {
		fmt.Fprintf(&sb, "---\napiVersion: regwire.dev/v1alpha1\nkind: ImageSync\nmetadata: {name: app-%d}\nspec:\n  source: {image: 127.0.0.1:5000/bench/app-%d, tags: [\"1.0.0\", \"1.1.0\", \"1.2.0\"]}\n  target: {image: 127.0.0.1:5001/bench/app-%d}\n", i, i, i)
	}
	file := filepath.Join(b.TempDir(), "syncs.yaml")
	if err := os.WriteFile(file, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Setenv("DOCKER_CONFIG", b.TempDir())
	b.ReportAllocs()
	for b.Loop() {
		if s, err := readSyncFile(file, true); err != nil || len(s) != 40 {
			b.Fatal(err)
		}
	}
}
