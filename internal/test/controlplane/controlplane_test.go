package controlplane

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeAssets makes a directory that looks like a built bin/k8s/<os>-<arch>.
func fakeAssets(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "bin", "k8s", runtime.GOOS+"-"+runtime.GOARCH)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// These tests change the working directory and environment, so they do not run in parallel.

func TestAssetsDirWalksUpFromTheWorkingDirectory(t *testing.T) {
	root := t.TempDir()
	want := fakeAssets(t, root)
	deep := filepath.Join(root, "controllers", "sub")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Chdir(deep)
	got, err := AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("AssetsDir() = %s, want %s", got, want)
	}
}

func TestAssetsDirPrefersKubebuilderAssets(t *testing.T) {
	want := fakeAssets(t, t.TempDir())
	t.Setenv("KUBEBUILDER_ASSETS", want)
	t.Chdir(t.TempDir())
	if got, err := AssetsDir(); err != nil || got != want {
		t.Errorf("AssetsDir() = %s, %v; want %s", got, err, want)
	}
}

func TestAssetsDirSaysHowToBuildMissingBinaries(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Chdir(t.TempDir())
	if _, err := AssetsDir(); !errors.Is(err, ErrNoAssets) {
		t.Errorf("AssetsDir() error = %v, want ErrNoAssets", err)
	}
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	_, err := AssetsDir()
	if !errors.Is(err, ErrNoAssets) {
		t.Fatalf("AssetsDir() error = %v, want ErrNoAssets", err)
	}
	if want := "make envtest"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}
