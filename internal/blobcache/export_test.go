package blobcache

// SetMaxEntries lowers the bound for a test and returns the old one.
func SetMaxEntries(n int) int {
	old := maxEntries
	maxEntries = n
	return old
}
