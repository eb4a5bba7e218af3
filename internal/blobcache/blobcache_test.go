package blobcache_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/regwire/regwire/internal/blobcache"
)

func sortHints(h []blobcache.Hint) []blobcache.Hint {
	slices.SortFunc(h, func(a, b blobcache.Hint) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmpStr(a.Digest+a.Repo, b.Digest+b.Repo)
	})
	return h
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestWhatOneProcessSavesTheNextLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regwire", "blobs.db")
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if got, err := blobcache.Load(path, nil, now); err != nil || len(got) != 0 {
		t.Fatalf("a missing file: %v %v, want an empty cache", got, err)
	}
	saved := []blobcache.Hint{
		{Registry: "nexus.local", Digest: "sha256:aa", Repo: "team/app", At: now.Add(-time.Hour)},
		{Registry: "nexus.local", Digest: "sha256:aa", Repo: "team/base", At: now.Add(-time.Minute)},
		{Registry: "other.local", Digest: "sha256:bb", Repo: "x", At: now.Add(-time.Minute)},
		{Registry: "nexus.local", Digest: "sha256:cc", Repo: "old", At: now.Add(-blobcache.MaxAge - time.Hour)},
	}
	if err := blobcache.Save(path, saved, now); err != nil {
		t.Fatal(err)
	}
	got, err := blobcache.Load(path, []string{"nexus.local"}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []blobcache.Hint{saved[0], saved[1]} // other.local not asked for, the old one expired
	if !slices.Equal(sortHints(got), want) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}
	// A later save of the same repository moves its time; each blob keeps MaxRepos repos.
	var more []blobcache.Hint
	for i := range blobcache.MaxRepos + 2 {
		more = append(more, blobcache.Hint{Registry: "nexus.local", Digest: "sha256:aa", Repo: fmt.Sprintf("r%d", i), At: now.Add(time.Duration(i) * time.Second)})
	}
	if err := blobcache.Save(path, more, now); err != nil {
		t.Fatal(err)
	}
	got, _ = blobcache.Load(path, nil, now.Add(time.Minute))
	var repos []string
	for _, h := range sortHints(got) {
		if h.Digest == "sha256:aa" {
			repos = append(repos, h.Repo)
		}
	}
	if want := []string{"r2", "r3", "r4", "r5"}; !slices.Equal(repos, want) {
		t.Errorf("sha256:aa is held by %v, want the %d most recent %v", repos, blobcache.MaxRepos, want)
	}
}

func TestTheFileKeepsTheMostRecentlySeenBlobs(t *testing.T) {
	old := blobcache.SetMaxEntries(10)
	defer blobcache.SetMaxEntries(old)
	path := filepath.Join(t.TempDir(), "blobs.db")
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var hints []blobcache.Hint
	for i := range 25 {
		hints = append(hints, blobcache.Hint{Registry: "r", Digest: fmt.Sprintf("sha256:%02d", i), Repo: "x", At: now.Add(time.Duration(i) * time.Second)})
	}
	if err := blobcache.Save(path, hints, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, _ := blobcache.Load(path, nil, now.Add(time.Minute))
	if len(got) != 10 || sortHints(got)[0].Digest != "sha256:15" {
		t.Errorf("kept %d blobs from %v, want the 10 newest (sha256:15 on)", len(got), got)
	}
}

// TestConcurrentProcessesShareTheFile saves from many writers at once (each open takes
// the file's lock, as separate processes do) and loads while they do: nothing is lost or
// torn.
func TestConcurrentProcessesShareTheFile(t *testing.T) {
	// Sixteen openers in turn may take longer than LockTimeout on a loaded machine; going
	// without the cache then is right for a run, but this test wants every save.
	defer blobcache.SetLockTimeout(blobcache.SetLockTimeout(time.Minute))
	path := filepath.Join(t.TempDir(), "blobs.db")
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 8 {
		wg.Go(func() {
			h := []blobcache.Hint{{Registry: "r", Digest: fmt.Sprintf("sha256:%d", w), Repo: "x", At: now}}
			if err := blobcache.Save(path, h, now); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			if _, err := blobcache.Load(path, nil, now); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, _ := blobcache.Load(path, nil, now); len(got) != 8 {
		t.Errorf("after 8 concurrent saves the file holds %d hints, want 8", len(got))
	}
}

// TestABusyFileIsNotWaitedFor: while another process holds the file, Load and
// Save give up after LockTimeout with ErrBusy.
func TestABusyFileIsNotWaitedFor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blobs.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	_, err = blobcache.Load(path, nil, time.Now())
	if !errors.Is(err, blobcache.ErrBusy) {
		t.Fatalf("Load while held: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > blobcache.LockTimeout+time.Second {
		t.Errorf("Load waited %s, want about %s", d, blobcache.LockTimeout)
	}
}
