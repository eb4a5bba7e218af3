// Package ocidir keeps images in an OCI image layout directory (oci-layout, index.json,
// blobs/sha256/…), as skopeo's and oras's oci: transports read and write it, and serves
// it over the registry API (Serve), so that every copy regwire makes between registries
// — tags, multi-platform indexes, referrers, resumption — also goes to and from a
// directory carried across an air gap.
//
// Writes are crash-safe: a blob is written to a temporary file, checked against its
// digest and renamed into place, and index.json is replaced whole; a copy that is
// interrupted leaves only complete blobs, and its rerun finds them (a HEAD) instead of
// reading them from the source again. Reads check every blob against its digest and name
// the file that does not match.
package ocidir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RefName is the annotation naming a manifest in index.json: here repository:tag, e.g.
// library/busybox:1.36 (the image-layout spec's ref grammar allows both / and :).
const RefName = "org.opencontainers.image.ref.name"

// Checksums is the file listing the sha256 of every other file of the directory, in
// sha256sum's format (`sha256sum -c SHA256SUMS` checks a copy).
const Checksums = "SHA256SUMS"

// Dir is an OCI image layout directory.
type Dir struct {
	root string
	mu   sync.Mutex // index.json
}

// Open opens the layout at root, creating it (oci-layout, an empty index.json) when the
// directory is empty or missing.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(filepath.Join(root, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	d := &Dir{root: root}
	// Uploads a stopped run left behind: never blobs, never read.
	stale, _ := filepath.Glob(filepath.Join(root, "blobs", "sha256", ".upload-*"))
	for _, f := range stale {
		_ = os.Remove(f)
	}
	layout := filepath.Join(root, "oci-layout")
	if _, err := os.Stat(layout); errors.Is(err, fs.ErrNotExist) {
		if err := d.writeFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(root, "index.json")); errors.Is(err, fs.ErrNotExist) {
		if err := d.writeIndex(&v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Root is the directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) blobPath(digest v1.Hash) (string, error) {
	if digest.Algorithm != "sha256" || len(digest.Hex) != 64 {
		return "", fmt.Errorf("unsupported digest %s", digest)
	}
	if _, err := hex.DecodeString(digest.Hex); err != nil {
		return "", fmt.Errorf("digest %s: %w", digest, err)
	}
	return filepath.Join(d.root, "blobs", "sha256", digest.Hex), nil
}

// Stat returns the size of the blob, and whether the directory holds it.
func (d *Dir) Stat(digest v1.Hash) (int64, bool) {
	p, err := d.blobPath(digest)
	if err != nil {
		return 0, false
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// CorruptError is a blob whose content does not match its digest.
type CorruptError struct {
	File   string
	Digest v1.Hash
	Got    string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s does not hold %s (its content hashes to sha256:%s): the copy on disk is corrupt; copy it again from the source", e.File, e.Digest, e.Got)
}

// OpenBlob returns the blob's content; reading it to the end checks it against the digest
// and fails with a *CorruptError naming the file when it does not match.
func (d *Dir) OpenBlob(digest v1.Hash) (io.ReadCloser, int64, error) {
	p, err := d.blobPath(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return &verifying{f: f, h: sha256.New(), digest: digest, file: p}, fi.Size(), nil
}

type verifying struct {
	f      *os.File
	h      hash.Hash
	digest v1.Hash
	file   string
}

func (v *verifying) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.digest.Hex {
			return n, &CorruptError{File: v.file, Digest: v.digest, Got: got}
		}
	}
	return n, err
}

func (v *verifying) Close() error { return v.f.Close() }

// ReadBlob reads a whole (small) blob, such as a manifest, checked against its digest.
func (d *Dir) ReadBlob(digest v1.Hash) ([]byte, error) {
	rc, _, err := d.OpenBlob(digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// WriteBlob writes r as the blob digest: to a temporary file, checked, synced and renamed
// into place. A blob already there is kept (r is not read). It returns the bytes written.
func (d *Dir) WriteBlob(digest v1.Hash, r io.Reader) (int64, error) {
	p, err := d.blobPath(digest)
	if err != nil {
		return 0, err
	}
	if _, ok := d.Stat(digest); ok {
		return 0, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".upload-*")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest.Hex {
		return n, fmt.Errorf("content hashes to sha256:%s, not %s", got, digest)
	}
	return n, os.Rename(tmp.Name(), p)
}

// Index returns index.json.
func (d *Dir) Index() (*v1.IndexManifest, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.readIndex()
}

func (d *Dir) readIndex() (*v1.IndexManifest, error) {
	f, err := os.Open(filepath.Join(d.root, "index.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return v1.ParseIndexManifest(f)
}

// AddManifest lists a manifest (a blob already written) in index.json: under name
// (repository:tag), replacing what that name listed, or without a name (a referrer, or an
// index's child kept for its own sake) once per digest.
func (d *Dir) AddManifest(desc v1.Descriptor, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	im, err := d.readIndex()
	if err != nil {
		return err
	}
	desc.Annotations = nil
	desc.Platform = nil
	if name != "" {
		desc.Annotations = map[string]string{RefName: name}
	}
	im.Manifests = slices.DeleteFunc(im.Manifests, func(m v1.Descriptor) bool {
		if name != "" {
			return m.Annotations[RefName] == name
		}
		return m.Digest == desc.Digest && m.Annotations[RefName] == ""
	})
	im.Manifests = append(im.Manifests, desc)
	return d.writeIndex(im)
}

func (d *Dir) writeIndex(im *v1.IndexManifest) error {
	sort.SliceStable(im.Manifests, func(i, j int) bool {
		return im.Manifests[i].Annotations[RefName] < im.Manifests[j].Annotations[RefName]
	})
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	return d.writeFile("index.json", b)
}

// writeFile replaces a file of the layout whole (temporary file, sync, rename).
func (d *Dir) writeFile(name string, data []byte) error {
	tmp, err := os.CreateTemp(d.root, "."+name+"-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(d.root, name))
}

// Tag is a named manifest of index.json.
type Tag struct {
	Repository, Tag string
	Descriptor      v1.Descriptor
}

// Tags returns the named manifests of index.json, by repository and tag.
func (d *Dir) Tags() ([]Tag, error) {
	im, err := d.Index()
	if err != nil {
		return nil, err
	}
	var out []Tag
	for _, m := range im.Manifests {
		name := m.Annotations[RefName]
		i := strings.LastIndex(name, ":")
		if i <= 0 || strings.Contains(name[i:], "/") {
			continue // a bare tag (another tool's) or no name: not addressable by repository
		}
		out = append(out, Tag{Repository: name[:i], Tag: name[i+1:], Descriptor: m})
	}
	return out, nil
}

// WriteChecksums writes SHA256SUMS: the sha256 of every file of the layout but itself,
// relative paths in sha256sum's format, sorted.
func (d *Dir) WriteChecksums() error {
	var lines []string
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil || rel == Checksums || strings.HasPrefix(e.Name(), ".") {
			return err
		}
		sum, err := fileSum(p, rel)
		if err != nil {
			return err
		}
		lines = append(lines, sum+"  "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(lines)
	return d.writeFile(Checksums, []byte(strings.Join(lines, "\n")+"\n"))
}

// fileSum is a file's sha256; a blob's is its name, checked when it was written.
func fileSum(p, rel string) (string, error) {
	if dir, name := filepath.Split(filepath.ToSlash(rel)); dir == "blobs/sha256/" && len(name) == 64 {
		return name, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
