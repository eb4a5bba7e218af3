package blobcache

import "time"

// SetMaxEntries lowers the bound for a test and returns the old one.
func SetMaxEntries(n int) int {
	old := maxEntries
	maxEntries = n
	return old
}

// SetLockTimeout changes how long a test waits for the file's lock and returns the old.
func SetLockTimeout(d time.Duration) time.Duration {
	old := lockTimeout
	lockTimeout = d
	return old
}
