package testutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Snapshot reads every file under root into a map from slash-separated relative path to
// content; directories appear as "dir/" with empty content, symlinks as "-> target".
// Directories named in skip (relative to root) are left out.
func Snapshot(t testing.TB, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".":
			return nil
		case d.IsDir():
			for _, s := range skip {
				if rel == s {
					return filepath.SkipDir
				}
			}
			out[rel+"/"] = ""
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "-> " + target
			return err
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
