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
			return rewriteInPlace(path, updated, mode)
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
	return rewriteInPlace(path, updated, mode)
}

// rewriteInPlace writes a file's new content over the old in one write.
func rewriteInPlace(path string, data []byte, mode fs.FileMode) (bool, error) {
	if err := writeSynced(hostFS{}, path, data, mode, os.O_TRUNC); err != nil {
		return false, fmt.Errorf("rewriting bind-mounted %s in place: %w", path, err)
	}
	return true, nil
}
