package local_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/bootstrap/local"
	"github.com/regwire/regwire/config/samples"
)

func TestRunAppliesSamplesAndPrintsTheirStatus(t *testing.T) {
	objs, s := inputs(t)
	state := t.TempDir()
	var out bytes.Buffer
	err := local.Run(context.Background(), local.Options{Out: &out, StateDir: state, Scheme: s, Objects: objs, Once: true})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		// kubectl-style headers from the CRDs' printer columns
		"NAME", "HOST", "NODES", "READY", "REASON", "AGE",
		"NAMESPACE", "SOURCE", "TARGET", "TAGS", "LAST SYNC",
		// both samples, Ready: the mirror on the one node, both tags copied
		"nexus-local   nexus.local   1/1     True    Reconciled",
		"busybox", "nexus.local/my-docker/busybox", "2/2    True    SyncSucceeded",
		// what the node got
		"nexus.local/hosts.toml", "nexus.local/ca.crt", "nexus.local\t# nexus-local",
		// and a clean stop
		"stopping regwire controllers", "stopping kube-apiserver and etcd",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	ca, _ := os.ReadFile(filepath.Join(state, "tls", "ca.crt"))
	nodeCA, err := os.ReadFile(filepath.Join(state, "node", "certs.d", "nexus.local", "ca.crt"))
	if err != nil || len(ca) == 0 || string(nodeCA) != string(ca) {
		t.Errorf("the node's CA for nexus.local is not the demo registry's: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(state, "manager.log"))
	if !strings.Contains(string(log), "Provisioned Nexus repositories") {
		t.Errorf("the sample's Nexus repository was not provisioned; manager log:\n%s", log)
	}
	fi, err := os.Stat(filepath.Join(state, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600 (it holds admin credentials)", fi.Mode().Perm())
	}
}

func TestRunStopsEverythingWhenCancelled(t *testing.T) {
	objs, s := inputs(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWatcher{marker: "watching", onMatch: cancel}
	err := local.Run(ctx, local.Options{Out: out, StateDir: t.TempDir(), Scheme: s, Objects: objs})
	if err != nil {
		t.Fatalf("Run after Ctrl-C: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "stopping kube-apiserver and etcd") {
		t.Errorf("no clean stop:\n%s", out.String())
	}
}

// lineWatcher records output and calls onMatch (once) when it sees a marker, standing in
// for a user pressing Ctrl-C once the stack is up.
type lineWatcher struct {
	bytes.Buffer
	marker  string
	onMatch func()
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if w.onMatch != nil && strings.Contains(w.String(), w.marker) {
		w.onMatch()
		w.onMatch = nil
	}
	return n, err
}

// inputs returns the built-in samples and a scheme for the stack.
func inputs(t *testing.T) ([]samples.Object, *runtime.Scheme) {
	t.Helper()
	objs, err := samples.All()
	if err != nil {
		t.Fatal(err)
	}
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return objs, s
}
