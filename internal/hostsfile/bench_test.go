package hostsfile_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/hostsfile"
)

// BenchmarkApply writes regwire's block of 10 entries into hosts files of 10, 1,000 and
// 10,000 foreign lines, first into a file without the block, then replacing it. Compare
// runs with benchstat.
func BenchmarkApply(b *testing.B) {
	entries := make([]hostsfile.Entry, 10)
	for i := range entries {
		entries[i] = hostsfile.Entry{IP: fmt.Sprintf("10.0.0.%d", i+1), Hostnames: []string{fmt.Sprintf("registry-%d.example", i)}, Owner: "mirror"}
	}
	for _, lines := range []int{10, 1000, 10000} {
		var sb strings.Builder
		for i := range lines {
			fmt.Fprintf(&sb, "192.168.%d.%d\thost-%d.lan host-%d\n", i/250, i%250+1, i, i)
		}
		without := []byte(sb.String())
		with, err := hostsfile.Apply(without, entries)
		if err != nil {
			b.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			content []byte
		}{{"add", without}, {"replace", with}} {
			b.Run(fmt.Sprintf("lines=%d/%s", lines, tc.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(tc.content)))
				for b.Loop() {
					if _, err := hostsfile.Apply(tc.content, entries); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
