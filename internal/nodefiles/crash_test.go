package nodefiles_test

import (
	"bufio"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/hostsfile"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/test/testutil"
)

// Two configurations the crash helper alternates between: creations, updates, removals,
// and a foreign file taken over (backed up) and given back (restored).
var (
	foreign = map[string]string{"shared.example/hosts.toml": "server = \"https://someone-elses\"\n"}
	configA = map[string]string{
		"a.example/hosts.toml":      "server = \"https://a\" # version A\n",
		"a.example/ca.crt":          strings.Repeat("A", 4096),
		"shared.example/hosts.toml": "server = \"https://shared\" # regwire A\n",
	}
	configB = map[string]string{
		"a.example/hosts.toml": "server = \"https://a\" # version B, longer than A's\n",
		"b.example/hosts.toml": "server = \"https://b\"\n",
		"b.example/ca.crt":     strings.Repeat("B", 8192),
	}
)

func bytesOf(m map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}

// TestMain runs the crash helper instead of the tests when the crash test starts this binary
// as its subprocess: it applies A and B in turn until killed.
func TestMain(m *testing.M) {
	if hosts := os.Getenv("REGWIRE_CRASH_HOSTS"); hosts != "" {
		_, _ = os.Stdout.WriteString("go\n")
		for {
			for _, entries := range [][]hostsfile.Entry{hostsShort, hostsLong} {
				if err := nodefiles.RewriteHostsFileInPlace(hosts, entries); err != nil {
					os.Exit(3)
				}
			}
		}
	}
	if root := os.Getenv("REGWIRE_CRASH_ROOT"); root != "" {
		f, err := nodefiles.Open(root)
		if err != nil {
			os.Exit(2)
		}
		_, _ = os.Stdout.WriteString("go\n")
		for {
			for _, c := range []map[string]string{configA, configB} {
				if _, err := f.Apply(bytesOf(c)); err != nil {
					os.Exit(3)
				}
			}
		}
	}
	os.Exit(m.Run())
}

// TestAgentKilledDuringApplyLeavesCompleteFiles kills an agent applying configurations
// 100 times at random points: every file is always some complete version, and the next
// start (an apply) brings the tree and the ownership record into agreement — releasing
// everything afterwards gives back exactly the foreign file that was there first.
func TestAgentKilledDuringApplyLeavesCompleteFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for p, c := range foreign {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	original := testutil.Snapshot(t, root)
	allowed := map[string][]string{}
	for _, m := range []map[string]string{foreign, configA, configB} {
		for p, c := range m {
			allowed[p] = append(allowed[p], c)
		}
	}
	// Trees between applies: a kill that leaves anything else hit an apply in flight.
	settled := func(files map[string]string) string {
		m := map[string]string{}
		for p, c := range foreign {
			m[p] = c
		}
		for p, c := range files {
			m[p] = c
		}
		return strings.Join(sortedKeys(m), ",") + "|" + strings.Join(valuesOf(m), ",")
	}
	between := map[string]bool{settled(nil): true, settled(configA): true, settled(configB): true}
	midApply := 0
	rng := rand.New(rand.NewPCG(7, 11))
	const runs = 100
	for i := range runs {
		killHelper(t, i, "REGWIRE_CRASH_ROOT="+root, time.Duration(rng.IntN(8000))*time.Microsecond)

		// Every file is a complete version: no torn writes.
		now := map[string]string{}
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if strings.HasPrefix(rel, ".regwire/") || strings.HasSuffix(rel, ".regwire-tmp") {
				return nil
			}
			b, _ := os.ReadFile(p)
			now[rel] = string(b)
			if !slices.Contains(allowed[rel], string(b)) {
				t.Errorf("run %d: %s holds %d bytes that are no complete version", i, rel, len(b))
			}
			return nil
		})

		if !between[settled(now)] || hasTemp(root) {
			midApply++
		}

		// The next start, then a release: the record agreed with the files.
		f, err := nodefiles.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Apply(bytesOf(configA)); err != nil {
			t.Fatalf("run %d: the next start failed: %v", i, err)
		}
		snap := testutil.Snapshot(t, root, ".regwire")
		for p, c := range configA {
			if snap[p] != c {
				t.Errorf("run %d: after the next start %s = %q", i, p, snap[p])
			}
		}
		for p := range snap {
			if _, ok := configA[p]; !ok && !strings.HasSuffix(p, "/") {
				t.Errorf("run %d: after the next start an extra file %s", i, p)
			}
		}
		if owned, _ := f.Owned(); !slices.Equal(owned, sortedKeys(configA)) {
			t.Errorf("run %d: the record owns %v", i, owned)
		}
		if _, err := f.Apply(nil); err != nil {
			t.Fatal(err)
		}
		if got := testutil.Snapshot(t, root, ".regwire"); !maps.Equal(got, original) {
			t.Errorf("run %d: after releasing everything the tree is %v, want %v", i, sortedKeys(got), sortedKeys(original))
		}
		_ = f.Close()
		if t.Failed() {
			return
		}
	}
	t.Logf("%d of %d kills landed in the middle of an apply", midApply, runs)
	if midApply < runs/10 {
		t.Errorf("only %d of %d kills hit an apply in flight; the test proves little", midApply, runs)
	}
}

// hasTemp reports a temporary file an interrupted write left.
func hasTemp(root string) bool {
	found := false
	_ = filepath.WalkDir(root, func(p string, _ fs.DirEntry, _ error) error {
		found = found || strings.HasSuffix(p, ".regwire-tmp")
		return nil
	})
	return found
}

func valuesOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// The hosts file the in-place crash helper rewrites: foreign lines before and after
// regwire's block, and two blocks of different lengths.
var (
	hostsForeign = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.0.0.5 node-1 # kubelet's\n"
	hostsShort   = []hostsfile.Entry{{IP: "10.1.1.1", Hostnames: []string{"nexus.local"}, Owner: "nexus"}}
	hostsLong    = []hostsfile.Entry{
		{IP: "10.1.1.1", Hostnames: []string{"nexus.local", "docker.nexus.local"}, Owner: "nexus"},
		{IP: "10.2.2.2", Hostnames: []string{"registry.example", "mirror.registry.example"}, Owner: "hub-mirror"},
		{IP: "fd00::7", Hostnames: []string{"v6.registry.example"}, Owner: "hub-mirror"},
	}
)

// TestAKillDuringAnInPlaceHostsRewriteNeverEmptiesTheFile rewrites a hosts file in place,
// as a single-file bind mount (the agent pod's /etc/hosts) forces, between a short and a
// long block, and kills the writer 200 times at random points. The file is never empty;
// its foreign lines are always there, byte for byte; the block always parses as one of the
// two versions; and filler comment lines left by a kill between the write and the cut are
// the only other thing ever seen. The next rewrite removes them.
func TestAKillDuringAnInPlaceHostsRewriteNeverEmptiesTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte(hostsForeign), 0o644); err != nil {
		t.Fatal(err)
	}
	versions := map[string]bool{hostsForeign: true} // a kill before the first rewrite
	for _, e := range [][]hostsfile.Entry{hostsShort, hostsLong} {
		b, err := hostsfile.Apply([]byte(hostsForeign), e)
		if err != nil {
			t.Fatal(err)
		}
		versions[string(b)] = true
	}
	rng := rand.New(rand.NewPCG(3, 5))
	const runs = 200
	blank := 0
	for i := range runs {
		killHelper(t, i, "REGWIRE_CRASH_HOSTS="+path, time.Duration(rng.IntN(3000))*time.Microsecond)

		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := string(b)
		switch {
		case versions[got]:
		case versions[trimFiller(got)]:
			blank++ // killed between the write and the cut
		default:
			t.Fatalf("run %d: the hosts file holds %d bytes that are neither version:\n%s", i, len(b), got)
		}
		if !strings.HasPrefix(got, hostsForeign) {
			t.Fatalf("run %d: the foreign lines are gone:\n%s", i, got)
		}
		if _, err := hostsfile.Read(b); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if err := nodefiles.RewriteHostsFileInPlace(path, hostsShort); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !versions[string(b)] {
		t.Errorf("after the next rewrite the file is %q", b)
	}
	t.Logf("%d of %d kills left filler lines (between the write and the cut)", blank, runs)
	if blank == 0 {
		t.Error("no kill landed between the write and the cut: the test proves little")
	}
}

// trimFiller cuts the filler lines off the end of a hosts file's content.
func trimFiller(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for len(lines) > 0 && (lines[len(lines)-1] == "" || strings.HasPrefix(lines[len(lines)-1], hostsfile.Unused) && strings.TrimSpace(strings.TrimPrefix(lines[len(lines)-1], hostsfile.Unused)) == "") {
		lines = lines[:len(lines)-1]
	}
	return strings.Join(lines, "")
}

// killHelper starts this test binary as the crash helper that env selects, lets it work
// for after once it says it has begun, and SIGKILLs it.
func killHelper(t *testing.T, run int, env string, after time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "go\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("run %d: the helper said %q", run, line)
	}
	time.Sleep(after)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}
