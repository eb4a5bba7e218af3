package nodefiles_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/test/testutil"
)

// snapshot reads every file under root except regwire's state directory.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	return testutil.Snapshot(t, root, nodefiles.StateDir)
}

func write(t *testing.T, root, rel, data string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, root string) *nodefiles.Files {
	t.Helper()
	f, err := nodefiles.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func apply(t *testing.T, f *nodefiles.Files, want map[string][]byte) []nodefiles.Change {
	t.Helper()
	ch, err := f.Apply(want)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func actions(ch []nodefiles.Change) []string {
	var out []string
	for _, c := range ch {
		out = append(out, string(c.Action)+" "+c.Path)
	}
	return out
}

var (
	nexusV1 = map[string][]byte{
		"nexus.local/hosts.toml": []byte("server = 'https://nexus.local'\n"),
		"nexus.local/ca.crt":     []byte("CA v1\n"),
	}
	nexusV2 = map[string][]byte{
		"nexus.local/hosts.toml": []byte("server = 'https://nexus.local'\n"),
		"nexus.local/ca.crt":     []byte("CA v2\n"),
	}
)

func TestApplyWritesUpdatesAndRemovesOnlyItsOwnFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, root, "other.local/hosts.toml", "server = 'https://other.local'\n")
	before := snapshot(t, root)
	f := open(t, root)

	if got, want := actions(apply(t, f, nexusV1)), []string{"written nexus.local/ca.crt", "written nexus.local/hosts.toml"}; !slices.Equal(got, want) {
		t.Errorf("first apply: %v, want %v", got, want)
	}
	if got := snapshot(t, root)["nexus.local/ca.crt"]; got != "CA v1\n" {
		t.Errorf("ca.crt = %q", got)
	}
	if got := actions(apply(t, f, nexusV1)); len(got) != 0 {
		t.Errorf("applying the same config again changed %v", got)
	}
	if got, want := actions(apply(t, f, nexusV2)), []string{"written nexus.local/ca.crt"}; !slices.Equal(got, want) {
		t.Errorf("CA rotation: %v, want %v", got, want)
	}
	owned, err := f.Owned()
	if err != nil || !slices.Equal(owned, []string{"nexus.local/ca.crt", "nexus.local/hosts.toml"}) {
		t.Errorf("Owned() = %v, %v", owned, err)
	}
	if got, want := actions(apply(t, f, nil)), []string{"removed nexus.local/ca.crt", "removed nexus.local/hosts.toml"}; !slices.Equal(got, want) {
		t.Errorf("release: %v, want %v", got, want)
	}
	if after := snapshot(t, root); !mapsEqual(after, before) {
		t.Errorf("root after release differs from before:\n%v\n%v", after, before)
	}
}

func TestForeignFilesAreBackedUpAndRestoredByteForByte(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	foreign := "# hand-written by an operator\nserver = \"https://nexus.local\"\n[host.\"https://10.0.0.5\"]\n"
	write(t, root, "nexus.local/hosts.toml", foreign)
	write(t, root, "nexus.local/client.cert", "someone's client cert")
	before := snapshot(t, root)
	f := open(t, root)

	got := actions(apply(t, f, nexusV1))
	if want := []string{"backed-up nexus.local/hosts.toml", "written nexus.local/ca.crt", "written nexus.local/hosts.toml"}; !slices.Equal(got, want) {
		t.Errorf("apply over a foreign file: %v, want %v", got, want)
	}
	if snapshot(t, root)["nexus.local/client.cert"] != "someone's client cert" {
		t.Error("a foreign file regwire does not render was touched")
	}
	got = actions(apply(t, f, nil))
	if want := []string{"removed nexus.local/ca.crt", "restored nexus.local/hosts.toml"}; !slices.Equal(got, want) {
		t.Errorf("release: %v, want %v", got, want)
	}
	after := snapshot(t, root)
	if !mapsEqual(after, before) {
		t.Errorf("foreign files not restored exactly:\n%v\nwant\n%v", after, before)
	}
	fi, err := os.Stat(filepath.Join(root, "nexus.local/hosts.toml"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("restored file mode %v (%v), want the original 0640", fi.Mode().Perm(), err)
	}
}

func TestDriftIsRepaired(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := open(t, root)
	apply(t, f, nexusV1)
	write(t, root, "nexus.local/hosts.toml", "edited by hand\n")
	if err := os.Remove(filepath.Join(root, "nexus.local/ca.crt")); err != nil {
		t.Fatal(err)
	}
	got := actions(apply(t, f, nexusV1))
	if want := []string{"repaired nexus.local/ca.crt", "repaired nexus.local/hosts.toml"}; !slices.Equal(got, want) {
		t.Errorf("drift repair: %v, want %v", got, want)
	}
	if s := snapshot(t, root); s["nexus.local/hosts.toml"] != string(nexusV1["nexus.local/hosts.toml"]) || s["nexus.local/ca.crt"] != "CA v1\n" {
		t.Errorf("files not repaired: %v", s)
	}
}

func TestNothingIsWrittenOutsideTheRoot(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(t *testing.T, root, outside string)
		want  map[string][]byte
		err   string
	}{
		{
			name: "a path that climbs out is refused",
			want: map[string][]byte{"../escape/hosts.toml": []byte("x")},
			err:  "refusing to write",
		},
		{
			name: "an absolute path is refused",
			want: map[string][]byte{"/etc/hosts.toml": []byte("x")},
			err:  "refusing to write",
		},
		{
			name: "a file other than hosts.toml or ca.crt is refused",
			want: map[string][]byte{"nexus.local/config.toml": []byte("x")},
			err:  "only hosts.toml and ca.crt",
		},
		{
			name: "a host directory that is a symlink out of the root is refused",
			setup: func(t *testing.T, root, outside string) {
				if err := os.Symlink(outside, filepath.Join(root, "nexus.local")); err != nil {
					t.Fatal(err)
				}
			},
			want: nexusV1,
			err:  "symlink",
		},
		{
			name: "a hosts.toml that is a symlink is refused",
			setup: func(t *testing.T, root, outside string) {
				write(t, root, "nexus.local/ca.crt", "x")
				if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(root, "nexus.local/hosts.toml")); err != nil {
					t.Fatal(err)
				}
			},
			want: nexusV1,
			err:  "symlink",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, outside := t.TempDir(), t.TempDir()
			write(t, outside, "target", "outside\n")
			if tc.setup != nil {
				tc.setup(t, root, outside)
			}
			_, err := open(t, root).Apply(tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if got := snapshot(t, outside); len(got) != 1 || got["target"] != "outside\n" {
				t.Errorf("the directory outside the root changed: %v", got)
			}
		})
	}
}

func TestADamagedRecordStopsTheAgent(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, root, nodefiles.StateDir+"/owned.json", "{not json")
	if _, err := open(t, root).Apply(nexusV1); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("err = %v, want the record called damaged", err)
	}
	write(t, root, nodefiles.StateDir+"/owned.json", `{"version":1,"files":{"../../etc/passwd":{}}}`)
	if _, err := open(t, root).Apply(nil); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("err = %v, want a record naming a path outside the root refused", err)
	}
}

func TestAHalfFinishedApplyIsCompletedByTheNext(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// What a crash right after claiming the files (step 1) leaves behind: the record
	// names the paths, nothing else is written.
	write(t, root, nodefiles.StateDir+"/owned.json", `{"version":1,"files":{"nexus.local/hosts.toml":{},"nexus.local/ca.crt":{}},"dirs":["nexus.local"]}`)
	f := open(t, root)
	if got := actions(apply(t, f, nil)); !slices.Equal(got, []string{"removed nexus.local/ca.crt", "removed nexus.local/hosts.toml"}) {
		t.Errorf("cleanup after a crash: %v", got)
	}
	if s := snapshot(t, root); len(s) != 0 {
		t.Errorf("root not clean: %v", s)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestFilesOfRefusedMirrorsAreKept(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := open(t, root)
	owners := map[string]string{"nexus.local/hosts.toml": "nexus", "nexus.local/ca.crt": "nexus"}
	if _, err := f.ApplyOwned(nodefiles.Desired{Files: nexusV1, Owners: owners}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	// The mirror is refused now: it is missing from Files but named in Keep.
	ch, err := f.ApplyOwned(nodefiles.Desired{Keep: map[string]bool{"nexus": true}})
	if err != nil || len(ch) != 0 {
		t.Fatalf("ApplyOwned with the mirror kept: %v, %v", actions(ch), err)
	}
	if after := snapshot(t, root); !mapsEqual(after, before) {
		t.Errorf("kept files changed:\n%v\n%v", after, before)
	}
	// Once it is neither wanted nor kept, its files go.
	if got := actions(apply(t, f, nil)); !slices.Equal(got, []string{"removed nexus.local/ca.crt", "removed nexus.local/hosts.toml"}) {
		t.Errorf("release: %v", got)
	}
}

// TestARootEmptiedByItsRuntimeIsWrittenAgain: k3s and RKE2 delete their certs.d (the
// ownership record with it) and regenerate it from registries.yaml when they start; the
// next apply writes regwire's files again.
func TestARootEmptiedByItsRuntimeIsWrittenAgain(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	f := open(t, root) // the running agent's
	apply(t, f, nexusV1)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	write(t, root, "docker.io/hosts.toml", "# written by k3s\n")
	apply(t, f, nexusV1)
	s := snapshot(t, root)
	if s["nexus.local/hosts.toml"] != string(nexusV1["nexus.local/hosts.toml"]) || s["nexus.local/ca.crt"] != "CA v1\n" || s["docker.io/hosts.toml"] != "# written by k3s\n" {
		t.Errorf("after the runtime emptied the root: %v", s)
	}
}
