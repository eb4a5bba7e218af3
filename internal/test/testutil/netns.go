package testutil

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// netnsTest names the test a re-executed test binary runs inside its own namespaces.
const netnsTest = "REGWIRE_TEST_IN_NETNS"

// InOwnNetwork re-executes the running top-level test in a network and mount namespace of
// its own (unshare, as root): there lo is up, the shell commands setup have run (e.g.
// "ip addr add 169.254.169.254/32 dev lo", or a bind mount over /etc/hosts), and the
// machine's network and mounts never change. In that child it returns true and the test
// goes on; in the parent it returns false once the child has run, its output logged and
// its failure the test's.
func InOwnNetwork(t *testing.T, setup string) bool {
	t.Helper()
	if os.Getenv(netnsTest) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test runs in a network namespace of its own: run it as root (CI does)")
	}
	for _, tool := range []string{"unshare", "ip", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install util-linux, iproute2 and mount (apt-get install util-linux iproute2 mount)", tool)
		}
	}
	script := "set -e; ip link set lo up; " + setup + `; exec "$@"`
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsTest+"="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its own network namespace: %v", err)
	}
	return false
}
