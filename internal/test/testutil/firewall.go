package testutil

import (
	"bytes"
	"os/exec"
	"regexp"
	"testing"
)

// KeepFirewall snapshots the machine's iptables and ip6tables rules and puts them back
// when the test ends if they changed (kubelet adds chains of its own, KUBE-FIREWALL and
// canaries, and leaves them).
func KeepFirewall(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"iptables", "ip6tables"} {
		before, err := exec.Command(tool + "-save").Output()
		if err != nil {
			t.Logf("%s-save: %v (the firewall is not kept)", tool, err)
			continue
		}
		t.Cleanup(func() {
			after, err := exec.Command(tool + "-save").Output()
			if err != nil || bytes.Equal(rules(after), rules(before)) {
				return
			}
			restore := exec.Command(tool + "-restore")
			restore.Stdin = bytes.NewReader(before)
			if out, err := restore.CombinedOutput(); err != nil {
				t.Errorf("%s-restore: %v\n%s", tool, err, out)
				return
			}
			// A table the snapshot does not have (not loaded before) is emptied.
			for _, m := range table.FindAllSubmatch(after, -1) {
				if !bytes.Contains(before, m[0]) {
					_ = exec.Command(tool, "-t", string(m[1]), "-F").Run()
					_ = exec.Command(tool, "-t", string(m[1]), "-X").Run()
				}
			}
			t.Logf("%s: the rules the test added are removed", tool)
		})
	}
}

// counters matches iptables-save's comments and packet counters, which change by
// themselves.
var counters = regexp.MustCompile(`(?m)^#.*$|\[\d+:\d+\]`)

// table matches a table's line in iptables-save's output.
var table = regexp.MustCompile(`(?m)^\*(\w+)$`)

func rules(save []byte) []byte { return counters.ReplaceAll(save, nil) }
