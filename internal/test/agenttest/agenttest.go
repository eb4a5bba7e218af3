// Package agenttest runs regwire node agents in-process for tests: a Node object and an
// agent with its own containerd configuration root and hosts file, as on a real node.
package agenttest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/controllers/nodeagent"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/test/testutil"
)

// Node is one node: the Node object and its agent's root and hosts file.
type Node struct {
	Name, Root, HostsFile string
	// CRIORoot, DockerRoot and ContainerdConfig are the node's /etc/containers,
	// /etc/docker/certs.d and containerd configuration file; "" when Options did not ask.
	CRIORoot, DockerRoot, ContainerdConfig string
	// Before is Snapshot as it was before the agent started.
	Before map[string]string
}

// Options tune Start.
type Options struct {
	// Namespace the agent reads published mirrors from (the operator's).
	Namespace string
	// HostsContent is the hosts file before regwire; Resync how often the agent re-applies;
	// ReportSpread the agent's (0: reports at once).
	HostsContent string
	Resync       time.Duration
	ReportSpread time.Duration
	// Labels of the Node object.
	Labels map[string]string
	// Files are foreign files (relative path → content) in the root before the agent starts.
	Files map[string]string
	// RuntimeVersion is the Node's status.nodeInfo.containerRuntimeVersion, e.g.
	// cri-o://1.31.0; empty leaves it unset.
	RuntimeVersion string
	// CRIO and Docker give the agent those runtimes' roots as well.
	CRIO, Docker bool
	// ContainerdConfig, when not nil, is the node's containerd configuration file, which
	// the agent checks for config_path.
	ContainerdConfig *string
}

// Start creates the Node and runs its agent until the test ends.
func Start(t testing.TB, cfg *rest.Config, k8s client.Client, name string, o Options) *Node {
	t.Helper()
	n := &Node{Name: name, Root: t.TempDir(), HostsFile: filepath.Join(t.TempDir(), "hosts")}
	for p, data := range o.Files {
		full := filepath.Join(n.Root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(n.HostsFile, []byte(o.HostsContent), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Before = n.Snapshot(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: o.Labels}}
	if err := k8s.Create(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
	if o.RuntimeVersion != "" {
		node.Status.NodeInfo.ContainerRuntimeVersion = o.RuntimeVersion
		if err := k8s.Status().Update(context.Background(), node); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir() // the node's other files
	for _, extra := range []struct {
		on   bool
		path *string
		name string
	}{{o.CRIO, &n.CRIORoot, "containers"}, {o.Docker, &n.DockerRoot, "docker-certs.d"}} {
		if extra.on {
			*extra.path = filepath.Join(dir, extra.name)
			if err := os.MkdirAll(*extra.path, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if o.ContainerdConfig != nil {
		n.ContainerdConfig = filepath.Join(dir, "containerd-config.toml")
		if err := os.WriteFile(n.ContainerdConfig, []byte(*o.ContainerdConfig), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := nodeagent.New(cfg, nodeagent.Options{
		NodeName: name, Namespace: o.Namespace, Root: n.Root, HostsFile: n.HostsFile, Resync: o.Resync, ReportSpread: o.ReportSpread, Version: "test",
		CRIORoot: n.CRIORoot, DockerRoot: n.DockerRoot, ContainerdConfig: n.ContainerdConfig,
		Manager: ctrl.Options{
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			// Several agents run in one test process.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	})
	return n
}

// Snapshot reads the node's root (without the agent's state directory) and, under
// "<hosts file>", its hosts file.
func (n *Node) Snapshot(t testing.TB) map[string]string {
	t.Helper()
	out := testutil.Snapshot(t, n.Root, nodefiles.StateDir)
	hosts, err := os.ReadFile(n.HostsFile)
	if err != nil {
		t.Fatal(err)
	}
	out["<hosts file>"] = string(hosts)
	return out
}

// File is the content of a file under the root, or "<error>".
func (n *Node) File(rel string) string {
	b, err := os.ReadFile(filepath.Join(n.Root, rel))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// SameTree compares two snapshots (Node.Snapshot).
func SameTree(want, got map[string]string) error {
	for k, v := range want {
		if g, ok := got[k]; !ok {
			return fmt.Errorf("%s is missing", k)
		} else if g != v {
			return fmt.Errorf("%s is\n%q\nwant\n%q", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("%s is left over", k)
		}
	}
	return nil
}
