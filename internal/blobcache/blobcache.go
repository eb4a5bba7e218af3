// Package blobcache keeps, on disk and across processes, where blobs were last seen: for
// each registry and digest, the repositories known to hold it and when. `regwire sync`
// loads it before a run and saves what the run learned after, so that the next process
// mounts a shared layer from a repository that has it instead of uploading it again.
//
// An entry is a hint, never the truth: it only ever names a repository to mount from,
// which the registry checks (a mount of a blob the repository no longer has is answered
// with an ordinary upload), and never makes a copy skip a blob. Entries older than MaxAge
// are dropped, the file holds at most MaxEntries blobs (the least recently seen go first),
// and concurrent processes share it safely: loading takes bbolt's shared lock, saving its
// exclusive one for one short transaction, and a process that cannot get a lock within
// LockTimeout runs without the cache rather than wait.
package blobcache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Limits of what the file keeps.
const (
	// MaxAge is how long a repository is remembered to hold a blob.
	MaxAge = 7 * 24 * time.Hour
	// MaxEntries bounds the blobs remembered, over all registries (a few MiB on disk).
	MaxEntries = 50_000
	// MaxRepos bounds the repositories remembered per blob: one is enough to mount from.
	MaxRepos = 4
	// LockTimeout is how long a process waits for another's lock before going without.
	LockTimeout = 2 * time.Second
)

// maxEntries and lockTimeout are MaxEntries and LockTimeout; tests change them.
var (
	maxEntries  = MaxEntries
	lockTimeout = LockTimeout
)

// Hint says that Repo of Registry held the blob Digest at At.
type Hint struct {
	Registry string
	Digest   string
	Repo     string
	At       time.Time
}

// DefaultPath is the cache file under the user's cache directory (XDG_CACHE_HOME, else
// ~/.cache): <cache>/regwire/blobs.db.
func DefaultPath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "regwire", "blobs.db"), nil
}

// ErrBusy is returned when another process held the file for longer than LockTimeout.
var ErrBusy = errors.New("the blob cache is in use by another process")

// storedRepo is one repository of a blob as stored: JSON, small and versionable.
type storedRepo struct {
	Repo string    `json:"r"`
	At   time.Time `json:"t"`
}

// Load returns the hints for registries (every registry when nil) that are younger than
// MaxAge at now. A missing file is an empty cache.
func Load(path string, registries []string, now time.Time) ([]Hint, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return nil, opened(path, err)
	}
	defer db.Close()
	var out []Hint
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			registry := string(name)
			if registries != nil && !slices.Contains(registries, registry) {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				var repos []storedRepo
				_ = json.Unmarshal(v, &repos) // a damaged entry is no hint: repos stays empty
				for _, r := range repos {
					if now.Sub(r.At) < MaxAge {
						out = append(out, Hint{Registry: registry, Digest: string(k), Repo: r.Repo, At: r.At})
					}
				}
				return nil
			})
		})
	})
	return out, err
}

// Save merges hints into the file (creating it and its directory), keeping per blob the
// MaxRepos most recent repositories, dropping what is older than MaxAge at now, and the
// least recently seen blobs beyond MaxEntries.
func Save(path string, hints []Hint, now time.Time) error {
	if len(hints) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return opened(path, err)
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, h := range hints {
			b, err := tx.CreateBucketIfNotExists([]byte(h.Registry))
			if err != nil {
				return err
			}
			var repos []storedRepo
			_ = json.Unmarshal(b.Get([]byte(h.Digest)), &repos)
			repos = slices.DeleteFunc(repos, func(r storedRepo) bool { return r.Repo == h.Repo || now.Sub(r.At) >= MaxAge })
			repos = append(repos, storedRepo{Repo: h.Repo, At: h.At.UTC()})
			slices.SortFunc(repos, func(a, b storedRepo) int { return a.At.Compare(b.At) })
			if len(repos) > MaxRepos {
				repos = repos[len(repos)-MaxRepos:]
			}
			v, err := json.Marshal(repos)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(h.Digest), v); err != nil {
				return err
			}
		}
		return trim(tx, now)
	})
}

// trim drops expired entries and, past MaxEntries, the least recently seen blobs.
func trim(tx *bolt.Tx, now time.Time) error {
	type entry struct {
		bucket, key []byte
		newest      time.Time
	}
	var all []entry
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			var repos []storedRepo
			newest := time.Time{}
			if json.Unmarshal(v, &repos) == nil {
				for _, r := range repos {
					if r.At.After(newest) {
						newest = r.At
					}
				}
			}
			all = append(all, entry{bytes.Clone(name), bytes.Clone(k), newest})
			return nil
		})
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b entry) int { return b.newest.Compare(a.newest) })
	for i, e := range all {
		if i < maxEntries && now.Sub(e.newest) < MaxAge {
			continue
		}
		if err := tx.Bucket(e.bucket).Delete(e.key); err != nil {
			return err
		}
	}
	return nil
}

func opened(path string, err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%s: %w", path, ErrBusy)
	}
	return fmt.Errorf("opening the blob cache %s: %w", path, err)
}
