package nodefiles

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/regwire/regwire/internal/hostsfile"
)

// ApplyHostsFile makes regwire's block in the hosts file at path (normally /etc/hosts) hold
// entries, leaving every other line alone, and reports whether the file changed. Lines of
// the block whose owner is in keep stay as they are (mirrors the node refused to render
// keep their last good entries).
func ApplyHostsFile(path string, entries []hostsfile.Entry, keep ...string) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(keep) > 0 {
		current, err := hostsfile.Read(old)
		if err != nil {
			return false, fmt.Errorf("%s: %w", path, err)
		}
		for _, e := range current {
			if e.Owner != "" && slices.Contains(keep, e.Owner) {
				entries = append(entries, e)
			}
		}
	}
	return writeHostsFile(path, old, entries)
}

// writeHostsFile replaces the block of a hosts file whose content is old.
//
// It replaces the file atomically (temp file, fsync, rename) keeping its mode and owner.
// Where the file is a single-file bind mount, as /etc/hosts is in containers and kind
// nodes, rename fails with EBUSY, and where it is mounted alone on a read-only file system
// (the agent pod's hostPath), the temporary file cannot even be made; the content is then
// written in place in one write.
func writeHostsFile(path string, old []byte, entries []hostsfile.Entry) (bool, error) {
	updated, err := hostsfile.Apply(old, entries)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(old, updated) {
		return false, nil
	}
	mode, uid, gid := fs.FileMode(0o644), -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}

	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".regwire-tmp")
	if err := writeSynced(hostFS{}, tmp, updated, mode, os.O_CREATE|os.O_TRUNC|os.O_EXCL); err != nil {
		_ = os.Remove(tmp)
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			// The directory is not writable: the file is a single-file mount (the agent
			// pod's hostPath /etc/hosts on its read-only root), which can only be
			// rewritten.
			return rewriteInPlace(path, old, updated)
		}
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if uid >= 0 {
		_ = os.Chown(tmp, uid, gid)
	}
	err = os.Rename(tmp, path)
	if err == nil {
		return true, syncDir(hostFS{}, filepath.Dir(path))
	}
	_ = os.Remove(tmp)
	if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EXDEV) {
		return false, fmt.Errorf("replacing %s: %w", path, err)
	}
	// A bind-mounted file cannot be replaced, only rewritten.
	return rewriteInPlace(path, old, updated)
}

// rewriteInPlace turns a file holding old into one holding updated without a moment where
// it is empty or short of a line outside regwire's block (truncating, then writing, would
// leave an empty /etc/hosts to a kill between the two). The bytes from the first that
// differs are written in one write at their offset, so the lines before them are never
// touched; when the new content is shorter, the write also covers the old leftover with
// filler comment lines, and only then is the file cut to length. A kill between the write and the cut
// leaves comment lines (hostsfile.Filler) at the end, which resolvers skip and the next
// apply removes; a write of a small file's changed tail lands whole or not at all.
func rewriteInPlace(path string, old, updated []byte) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return false, fmt.Errorf("rewriting bind-mounted %s in place: %w", path, err)
	}
	err = writeTail(f, old, updated)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("rewriting bind-mounted %s in place: %w", path, err)
	}
	return true, nil
}

// writeTail writes updated over old in f from their first differing byte, covering a
// shrinking file's leftover with filler before cutting it, each step synced.
func writeTail(f *os.File, old, updated []byte) error {
	p := 0
	for p < len(old) && p < len(updated) && old[p] == updated[p] {
		p++
	}
	data := updated[p:]
	if len(updated) < len(old) {
		data = append(slices.Clone(data), hostsfile.Filler(len(old)-len(updated))...)
	}
	if _, err := f.WriteAt(data, int64(p)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil || len(updated) >= len(old) {
		return err
	}
	if err := f.Truncate(int64(len(updated))); err != nil {
		return err
	}
	return f.Sync()
}
