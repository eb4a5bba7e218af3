// Package agent applies a node's rendered registry configuration to its file system:
// containerd host directories under config_path and regwire's block in /etc/hosts. The
// Kubernetes DaemonSet (`regwire agent`) and `regwire node apply` share it.
//
// Every write is atomic (temp file, fsync, rename, directory fsync) and goes through an
// os.Root, so no path, symlink included, can lead outside the configured root. An ownership
// record (StateDir/owned.json inside the root) lists what regwire wrote; regwire changes
// and deletes only those files. A foreign file it must replace is backed up first and
// restored when regwire no longer needs the path.
package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/regwire/regwire/internal/nodeconfig"
)

// StateDir is regwire's directory inside the root: the ownership record and backups. Its
// leading dot keeps it apart from host directories, which never start with one.
const StateDir = ".regwire"

const (
	recordFile = StateDir + "/owned.json"
	backupDir  = StateDir + "/backup"
	fileMode   = 0o644
	dirMode    = 0o755
)

// record is the ownership record.
type record struct {
	Version int `json:"version"`
	// Files maps each path regwire owns to what it knows about it.
	Files map[string]ownedFile `json:"files"`
	// Dirs lists host directories regwire created (and so may remove when empty).
	Dirs []string `json:"dirs,omitempty"`
}

type ownedFile struct {
	// SHA256 of the content regwire last wrote; "" while a write is in flight.
	SHA256 string `json:"sha256,omitempty"`
	// Backup is true when a foreign file was saved under backup/ before regwire replaced it.
	Backup bool `json:"backup,omitempty"`
	// Owner is the RegistryMirror the file was written for.
	Owner string `json:"owner,omitempty"`
}

// Change is one thing Apply did.
type Change struct {
	Path   string
	Action Action
}

// Action is what happened to a path.
type Action string

// Actions Apply reports.
const (
	Written  Action = "written"  // created or updated
	Repaired Action = "repaired" // rewritten because it differed from what regwire last wrote
	BackedUp Action = "backed-up"
	Restored Action = "restored"
	Removed  Action = "removed"
)

// Files applies host directory configuration inside one root (containerd's config_path).
type Files struct {
	root *os.Root
}

// OpenFiles opens root, which must exist.
func OpenFiles(root string) (*Files, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("opening registry configuration root: %w", err)
	}
	return &Files{root: r}, nil
}

// Close releases the root.
func (f *Files) Close() error { return f.root.Close() }

// Apply makes the root hold exactly want (paths relative to the root, as rendered by
// nodeconfig) among the files regwire owns, leaving every other file alone. It is
// idempotent and repairs drift: a file regwire owns that was edited or removed is
// rewritten. On error it stops; running it again finishes the job.
func (f *Files) Apply(want map[string][]byte) ([]Change, error) {
	return f.ApplyOwned(Desired{Files: want})
}

// Desired is what ApplyOwned makes true.
type Desired struct {
	// Files maps paths relative to the root to their content.
	Files map[string][]byte
	// Owners maps each path of Files to the RegistryMirror it is for.
	Owners map[string]string
	// Keep names mirrors whose files stay exactly as they are even though Files lacks
	// them: mirrors the node refused to render, which keep their last good files.
	Keep map[string]bool
}

// ApplyOwned is Apply with owners: files of the mirrors in d.Keep are neither removed nor
// rewritten.
func (f *Files) ApplyOwned(d Desired) ([]Change, error) {
	want := d.Files
	for p := range want {
		if err := checkPath(p); err != nil {
			return nil, err
		}
	}
	rec, err := f.readRecord()
	if err != nil {
		return nil, err
	}
	f.removeTemps(rec, want)
	var changes []Change

	// 1. Claim every path before touching it: a crash after this point leaves a record that
	//    names each file regwire may have written, so the next run can clean up. Foreign
	//    files are backed up before they are claimed.
	paths := sortedKeys(want)
	for _, p := range paths {
		if _, owned := rec.Files[p]; owned {
			continue
		}
		dir := path.Dir(p)
		if err := f.checkNotSymlink(dir); err != nil {
			return changes, err
		}
		if !f.exists(dir) && !slices.Contains(rec.Dirs, dir) {
			rec.Dirs = append(rec.Dirs, dir)
			slices.Sort(rec.Dirs)
		}
		entry := ownedFile{Owner: d.Owners[p]}
		if f.exists(p) {
			if err := f.checkNotSymlink(p); err != nil {
				return changes, err
			}
			if err := f.backup(p); err != nil {
				return changes, err
			}
			entry.Backup = true
			changes = append(changes, Change{Path: p, Action: BackedUp})
		}
		rec.Files[p] = entry
		if err := f.writeRecord(rec); err != nil {
			return changes, err
		}
	}

	// 2. Write what differs from the wanted content.
	for _, p := range paths {
		data := want[p]
		sum := digest(data)
		cur, err := f.root.ReadFile(p)
		if err == nil && digest(cur) == sum {
			if old := rec.Files[p]; old.SHA256 != sum || old.Owner != d.Owners[p] {
				rec.Files[p] = ownedFile{SHA256: sum, Backup: old.Backup, Owner: d.Owners[p]}
			}
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changes, fmt.Errorf("reading %s: %w", p, err)
		}
		action := Written
		if prev := rec.Files[p].SHA256; prev == sum {
			action = Repaired // regwire wrote this content before; someone changed the file
		}
		if err := f.root.MkdirAll(path.Dir(p), dirMode); err != nil {
			return changes, fmt.Errorf("creating %s: %w", path.Dir(p), err)
		}
		if err := f.writeAtomic(p, data); err != nil {
			return changes, err
		}
		rec.Files[p] = ownedFile{SHA256: sum, Backup: rec.Files[p].Backup, Owner: d.Owners[p]}
		changes = append(changes, Change{Path: p, Action: action})
	}
	if err := f.writeRecord(rec); err != nil {
		return changes, err
	}

	// 3. Release what is no longer wanted: restore backups, remove regwire's own files,
	//    then the directories regwire created once they are empty.
	for _, p := range sortedKeys(rec.Files) {
		if _, wanted := want[p]; wanted || d.Keep[rec.Files[p].Owner] {
			continue
		}
		if rec.Files[p].Backup {
			if err := f.restore(p); err != nil {
				return changes, err
			}
			changes = append(changes, Change{Path: p, Action: Restored})
		} else {
			if err := f.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return changes, fmt.Errorf("removing %s: %w", p, err)
			}
			changes = append(changes, Change{Path: p, Action: Removed})
		}
		delete(rec.Files, p)
		if err := f.writeRecord(rec); err != nil {
			return changes, err
		}
	}
	var keepDirs []string
	for _, d := range rec.Dirs {
		if f.inUse(d, rec) {
			keepDirs = append(keepDirs, d)
			continue
		}
		// Remove only when empty: a file someone else put there stays, with its directory.
		if err := f.root.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			if !f.exists(d) {
				continue
			}
			keepDirs = append(keepDirs, d) // not empty: not ours to delete
		}
	}
	rec.Dirs = keepDirs
	if err := f.writeRecord(rec); err != nil {
		return changes, err
	}
	_ = f.syncDir(".")
	return changes, nil
}

// Owned returns the paths regwire owns, sorted.
func (f *Files) Owned() ([]string, error) {
	rec, err := f.readRecord()
	if err != nil {
		return nil, err
	}
	return sortedKeys(rec.Files), nil
}

func (f *Files) inUse(dir string, rec *record) bool {
	for p := range rec.Files {
		if path.Dir(p) == dir {
			return true
		}
	}
	return false
}

// checkPath refuses any path that is not <hostdir>/<file> as nodeconfig renders it.
func checkPath(p string) error {
	dir, file := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if _, err := nodeconfig.HostDir(dir); err != nil {
		return fmt.Errorf("refusing to write %q: %w", p, err)
	}
	if file != nodeconfig.HostsFile && file != nodeconfig.CAFile {
		return fmt.Errorf("refusing to write %q: only %s and %s are written", p, nodeconfig.HostsFile, nodeconfig.CAFile)
	}
	return nil
}

func (f *Files) exists(p string) bool {
	_, err := f.root.Lstat(p)
	return err == nil
}

// checkNotSymlink refuses to work through a symlink regwire did not make: writing through
// it would change a file the link's owner meant to share.
func (f *Files) checkNotSymlink(p string) error {
	fi, err := f.root.Lstat(p)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("refusing to write through symlink %s in the registry configuration root; replace it with a directory or file", p)
	}
	return nil
}

func (f *Files) backup(p string) error {
	data, err := f.root.ReadFile(p)
	if err != nil {
		return fmt.Errorf("backing up foreign %s: %w", p, err)
	}
	fi, err := f.root.Stat(p)
	if err != nil {
		return err
	}
	dst := path.Join(backupDir, p)
	if err := f.root.MkdirAll(path.Dir(dst), 0o700); err != nil {
		return err
	}
	return f.writeAtomicMode(dst, data, fi.Mode().Perm())
}

func (f *Files) restore(p string) error {
	src := path.Join(backupDir, p)
	data, err := f.root.ReadFile(src)
	if err != nil {
		return fmt.Errorf("restoring foreign %s from its backup: %w", p, err)
	}
	fi, err := f.root.Stat(src)
	if err != nil {
		return err
	}
	if err := f.root.MkdirAll(path.Dir(p), dirMode); err != nil {
		return err
	}
	if err := f.writeAtomicMode(p, data, fi.Mode().Perm()); err != nil {
		return err
	}
	if err := f.root.Remove(src); err != nil {
		return err
	}
	_ = f.root.Remove(path.Dir(src)) // empty backup directory
	return nil
}

// removeTemps removes what writes a crash interrupted left: the temporary file of any path
// regwire owns or is about to write (every write is claimed in the record first), and the
// record's own. Left alone, one would keep its directory from ever being removed.
func (f *Files) removeTemps(rec *record, want map[string][]byte) {
	paths := []string{recordFile}
	for p := range rec.Files {
		paths = append(paths, p)
	}
	for p := range want {
		paths = append(paths, p)
	}
	for _, p := range paths {
		_ = f.root.Remove(tempPath(p))
	}
}

// tempPath is where writeAtomicMode stages p.
func tempPath(p string) string { return path.Join(path.Dir(p), "."+path.Base(p)+".regwire-tmp") }

func (f *Files) writeAtomic(p string, data []byte) error { return f.writeAtomicMode(p, data, fileMode) }

// writeAtomicMode writes data to p so that p always holds either its old or its new
// complete content: temp file in the same directory, fsync, rename, directory fsync.
func (f *Files) writeAtomicMode(p string, data []byte, mode fs.FileMode) error {
	tmp := tempPath(p)
	w, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	_, err = w.Write(data)
	if err == nil {
		err = w.Chmod(mode)
	}
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.root.Rename(tmp, p)
	}
	if err != nil {
		_ = f.root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return f.syncDir(path.Dir(p))
}

func (f *Files) syncDir(dir string) error {
	d, err := f.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (f *Files) readRecord() (*record, error) {
	rec := &record{Version: 1, Files: map[string]ownedFile{}}
	data, err := f.root.ReadFile(recordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the ownership record: %w", err)
	}
	if err := json.Unmarshal(data, rec); err != nil {
		return nil, fmt.Errorf("the ownership record %s is damaged (%w); regwire will not guess which files are its own: move it aside and clean up by hand", recordFile, err)
	}
	if rec.Files == nil {
		rec.Files = map[string]ownedFile{}
	}
	for p := range rec.Files {
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("the ownership record %s names %w", recordFile, err)
		}
	}
	return rec, nil
}

func (f *Files) writeRecord(rec *record) error {
	if err := f.root.MkdirAll(StateDir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return f.writeAtomicMode(recordFile, append(data, '\n'), 0o600)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
