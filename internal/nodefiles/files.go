// Package nodefiles applies a node's rendered registry configuration to its file system:
// containerd host directories under config_path and regwire's block in /etc/hosts. The
// Kubernetes DaemonSet (`regwire agent`) and `regwire node apply` share it.
//
// Every write is atomic (temp file, fsync, rename, directory fsync) and goes through an
// os.Root, so no path, symlink included, can lead outside the configured root. An ownership
// record (StateDir/owned.json inside the root) lists what regwire wrote; regwire changes
// and deletes only those files. A foreign file it must replace is backed up first and
// restored when regwire no longer needs the path.
package nodefiles

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

	"github.com/regwire/regwire/api/v1alpha1"
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

// Files applies one container runtime's registry configuration inside its root
// (containerd's config_path, /etc/containers for CRI-O, /etc/docker/certs.d for Docker).
type Files struct {
	root    *os.Root
	runtime v1alpha1.ContainerRuntime
}

// Open opens containerd's root, which must exist.
func Open(root string) (*Files, error) { return OpenFor(v1alpha1.RuntimeContainerd, root) }

// OpenFor opens rt's root, which must exist. Only the paths nodeconfig.CheckPath allows
// for rt are ever written in it.
func OpenFor(rt v1alpha1.ContainerRuntime, root string) (*Files, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("opening the %s registry configuration root: %w", rt, err)
	}
	return &Files{root: r, runtime: rt}, nil
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
// rewritten. It works in three steps, each leaving a record that lets the next run finish
// the job after a crash: claim, write, release.
func (f *Files) ApplyOwned(d Desired) ([]Change, error) {
	for p := range d.Files {
		if err := nodeconfig.CheckPath(f.runtime, p); err != nil {
			return nil, err
		}
	}
	rec, err := f.readRecord()
	if err != nil {
		return nil, err
	}
	f.removeTemps(rec, d.Files)
	a := &applying{Files: f, rec: rec, want: d}
	for _, step := range []func() error{a.claim, a.write, a.release, a.removeDirs} {
		if err := step(); err != nil {
			return a.changes, err
		}
	}
	_ = syncDir(f.root, ".")
	return a.changes, nil
}

// applying is one ApplyOwned under way.
type applying struct {
	*Files
	rec     *record
	want    Desired
	changes []Change
}

// claim records every wanted path before it is touched: a crash after this point leaves a
// record that names each file regwire may have written, so the next run can clean up.
// Foreign files are backed up before they are claimed.
func (a *applying) claim() error {
	for _, p := range sortedKeys(a.want.Files) {
		if _, owned := a.rec.Files[p]; owned {
			continue
		}
		dir := path.Dir(p)
		if err := a.checkNotSymlink(dir); err != nil {
			return err
		}
		// Every directory this write creates (certs.d as well as certs.d/<host>) is
		// regwire's to remove once empty.
		for d := dir; d != "." && !a.exists(d); d = path.Dir(d) {
			if !slices.Contains(a.rec.Dirs, d) {
				a.rec.Dirs = append(a.rec.Dirs, d)
			}
		}
		slices.Sort(a.rec.Dirs)
		entry := ownedFile{Owner: a.want.Owners[p]}
		if a.exists(p) {
			if err := a.checkNotSymlink(p); err != nil {
				return err
			}
			if err := a.backup(p); err != nil {
				return err
			}
			entry.Backup = true
			a.changes = append(a.changes, Change{Path: p, Action: BackedUp})
		}
		a.rec.Files[p] = entry
		if err := a.writeRecord(a.rec); err != nil {
			return err
		}
	}
	return nil
}

// write writes each wanted file whose content differs, then records the digests.
func (a *applying) write() error {
	for _, p := range sortedKeys(a.want.Files) {
		data, owner := a.want.Files[p], a.want.Owners[p]
		sum := digest(data)
		cur, err := a.root.ReadFile(p)
		if err == nil && digest(cur) == sum && a.privateEnough(p) {
			if old := a.rec.Files[p]; old.SHA256 != sum || old.Owner != owner {
				a.rec.Files[p] = ownedFile{SHA256: sum, Backup: old.Backup, Owner: owner}
			}
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		action := Written
		if prev := a.rec.Files[p].SHA256; prev == sum {
			action = Repaired // regwire wrote this content before; someone changed the file
		}
		if a.rec.Files[p].Backup && err == nil && !a.exists(path.Join(backupDir, p)) {
			// A release restored the foreign file and removed its backup, then stopped
			// before the record forgot it: the file is foreign again. Back it up anew.
			if err := a.backup(p); err != nil {
				return err
			}
			a.changes = append(a.changes, Change{Path: p, Action: BackedUp})
		}
		if err := a.root.MkdirAll(path.Dir(p), dirMode); err != nil {
			return fmt.Errorf("creating %s: %w", path.Dir(p), err)
		}
		if err := a.writeAtomic(p, data); err != nil {
			return err
		}
		a.rec.Files[p] = ownedFile{SHA256: sum, Backup: a.rec.Files[p].Backup, Owner: owner}
		a.changes = append(a.changes, Change{Path: p, Action: action})
	}
	return a.writeRecord(a.rec)
}

// release lets go of the owned files no longer wanted (but those of kept mirrors):
// backups are restored, regwire's own files removed.
func (a *applying) release() error {
	for _, p := range sortedKeys(a.rec.Files) {
		if _, wanted := a.want.Files[p]; wanted || a.want.Keep[a.rec.Files[p].Owner] {
			continue
		}
		if a.rec.Files[p].Backup {
			if err := a.restore(p); err != nil {
				return err
			}
			a.changes = append(a.changes, Change{Path: p, Action: Restored})
		} else {
			if err := a.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing %s: %w", p, err)
			}
			a.changes = append(a.changes, Change{Path: p, Action: Removed})
		}
		delete(a.rec.Files, p)
		if err := a.writeRecord(a.rec); err != nil {
			return err
		}
	}
	return nil
}

// removeDirs removes the directories regwire created once nothing is left in them: a file
// someone else put there stays, with its directory.
func (a *applying) removeDirs() error {
	var keep []string
	// Deepest first: a parent empties once its children are gone.
	dirs := slices.Clone(a.rec.Dirs)
	slices.SortFunc(dirs, func(x, y string) int { return strings.Count(y, "/") - strings.Count(x, "/") })
	for _, dir := range dirs {
		if a.inUse(dir, a.rec) {
			keep = append(keep, dir)
			continue
		}
		if err := a.root.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && a.exists(dir) {
			keep = append(keep, dir) // not empty: not ours to delete
		}
	}
	slices.Sort(keep)
	a.rec.Dirs = keep
	return a.writeRecord(a.rec)
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
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
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
	if errors.Is(err, fs.ErrNotExist) {
		// A backup is removed only once the foreign file is back in place: a crash after
		// that, before the record forgot the file, left nothing more to do.
		return nil
	}
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

// privateEnough reports whether p, if it is a key, is readable by its owner only.
func (f *Files) privateEnough(p string) bool {
	if !strings.HasSuffix(p, ".key") {
		return true
	}
	fi, err := f.root.Stat(p)
	return err == nil && fi.Mode().Perm()&0o077 == 0
}

// writeAtomic writes a rendered file: private keys with mode 0600, the rest 0644.
func (f *Files) writeAtomic(p string, data []byte) error {
	mode := fs.FileMode(fileMode)
	if strings.HasSuffix(p, ".key") {
		mode = 0o600
	}
	return f.writeAtomicMode(p, data, mode)
}

// writeAtomicMode writes data to p so that p always holds either its old or its new
// complete content: temp file in the same directory, fsync, rename, directory fsync.
func (f *Files) writeAtomicMode(p string, data []byte, mode fs.FileMode) error {
	tmp := tempPath(p)
	err := writeSynced(f.root, tmp, data, mode, os.O_CREATE|os.O_TRUNC)
	if err == nil {
		err = f.root.Rename(tmp, p)
	}
	if err != nil {
		_ = f.root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return syncDir(f.root, path.Dir(p))
}

// fileOpener is where files are written: the agent's os.Root, or the host's file system
// for the hosts file (hostFS).
type fileOpener interface {
	Open(name string) (*os.File, error)
	OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error)
}

// hostFS opens paths as they are.
type hostFS struct{}

func (hostFS) Open(name string) (*os.File, error) { return os.Open(name) }
func (hostFS) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// writeSynced writes data to name and fsyncs it before closing it. A file it creates
// (flags with O_CREATE) gets mode whatever the umask.
func writeSynced(fsys fileOpener, name string, data []byte, mode fs.FileMode, flags int) error {
	w, err := fsys.OpenFile(name, os.O_WRONLY|flags, mode)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	if err == nil && flags&os.O_CREATE != 0 {
		err = w.Chmod(mode)
	}
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs a directory, so that a rename in it survives a crash.
func syncDir(fsys fileOpener, dir string) error {
	d, err := fsys.Open(dir)
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
		if err := nodeconfig.CheckPath(f.runtime, p); err != nil {
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
