package nodefiles

import (
	"os"

	"github.com/regwire/regwire/internal/hostsfile"
)

// RewriteHostsFileInPlace applies entries to the hosts file at path the way a single-file
// bind mount forces (no temporary file, no rename), for the crash test.
func RewriteHostsFileInPlace(path string, entries []hostsfile.Entry) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	updated, err := hostsfile.Apply(old, entries)
	if err != nil {
		return err
	}
	_, err = rewriteInPlace(path, old, updated)
	return err
}
