package nodeagent_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/envtest"
	"github.com/regwire/regwire/internal/test/nexusemulator"
	"github.com/regwire/regwire/internal/test/testutil"
)

// waitFailing waits until the mirror's status.nodes.failing holds node with reason and
// a message containing each of want.
func waitFailing(t *testing.T, mirror, node string, reason v1alpha1.ConditionReason, want ...string) v1alpha1.NodeFailure {
	t.Helper()
	var got v1alpha1.NodeFailure
	testutil.Eventually(t, 10*time.Second, mirror+" reporting "+node+" "+string(reason), func() error {
		rm := &v1alpha1.RegistryMirror{}
		if err := env.Get(context.Background(), client.ObjectKey{Name: mirror}, rm); err != nil {
			return err
		}
		if rm.Status.Nodes == nil {
			return fmt.Errorf("no status.nodes yet")
		}
		i := slices.IndexFunc(rm.Status.Nodes.Failing, func(f v1alpha1.NodeFailure) bool { return f.Name == node })
		if i < 0 {
			return fmt.Errorf("status.nodes = %+v", rm.Status.Nodes)
		}
		got = rm.Status.Nodes.Failing[i]
		if got.Reason != reason {
			return fmt.Errorf("reason %s (%s), want %s", got.Reason, got.Message, reason)
		}
		for _, w := range want {
			if !strings.Contains(got.Message, w) {
				return fmt.Errorf("message %q lacks %q", got.Message, w)
			}
		}
		return nil
	})
	return got
}

// TestEachNodeIsWiredInItsRuntimesFormat runs a containerd node and a CRI-O node (as
// their Nodes' containerRuntimeVersion say) under one mirror: each gets its own
// runtime's files and reports it; a mirror asking for Docker's format, which cannot
// express mirrorOf, is applied there for its own host with a note saying what Docker does
// instead, and a node whose agent has no Docker root says which manager flag adds it.
func TestEachNodeIsWiredInItsRuntimesFormat(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "runtimes test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	endpoint := testutil.ChallengeServer(t, ca).URL
	labels := map[string]string{"runtimes-test": "true"}
	ctrd := agenttest.Start(t, env.Config, env, "runtimes-containerd", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels, RuntimeVersion: "containerd://2.4.2", Docker: true})
	crio := agenttest.Start(t, env.Config, env, "runtimes-crio", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels, RuntimeVersion: "cri-o://1.31.0", CRIO: true,
		Files: map[string]string{}})
	foreignDropIn := filepath.Join(crio.CRIORoot, "registries.conf.d", "000-shortnames.conf")
	if err := os.MkdirAll(filepath.Dir(foreignDropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreignDropIn, []byte("[aliases]\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "every-runtime"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: "proxy.local", Endpoint: endpoint, CABundle: ca.PEM, NodeSelector: labels,
			MirrorOf: []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}}, SkipFallback: true,
		},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, rm) })
	env.WaitNodes(t, rm.Name, "2/2", 10*time.Second)

	if _, err := os.Stat(filepath.Join(ctrd.Root, "docker.io", "hosts.toml")); err != nil {
		t.Errorf("the containerd node has no docker.io/hosts.toml: %v", err)
	}
	dropIn, err := os.ReadFile(filepath.Join(crio.CRIORoot, "registries.conf.d", "regwire-every-runtime.conf"))
	if err != nil || !strings.Contains(string(dropIn), "blocked = true") {
		t.Errorf("the CRI-O node's drop-in: %v\n%s", err, dropIn)
	}
	if entries, _ := os.ReadDir(crio.Root); len(entries) != 1 || entries[0].Name() != ".regwire" {
		t.Errorf("the CRI-O node got containerd files: %v", entries)
	}
	if b, _ := os.ReadFile(foreignDropIn); string(b) != "[aliases]\n" {
		t.Errorf("a foreign drop-in changed: %q", b)
	}
	for node, want := range map[string]v1alpha1.ContainerRuntime{ctrd.Name: v1alpha1.RuntimeContainerd, crio.Name: v1alpha1.RuntimeCRIO} {
		rn := &v1alpha1.RegistryNode{}
		if err := env.Get(ctx, client.ObjectKey{Name: node}, rn); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(rn.Status.Mirrors, func(m v1alpha1.NodeMirrorStatus) bool { return m.Name == rm.Name })
		if rn.Status.Runtime != want || i < 0 || !slices.Equal(rn.Status.Mirrors[i].Runtimes, []v1alpha1.ContainerRuntime{want}) {
			t.Errorf("RegistryNode %s: runtime %q, mirrors %+v; want %s", node, rn.Status.Runtime, rn.Status.Mirrors, want)
		}
	}

	// A foreign drop-in sorting after regwire's that configures docker.io wins in CRI-O:
	// the node says so, naming the file; once it is gone the node is ready again.
	shadow := filepath.Join(crio.CRIORoot, "registries.conf.d", "zz-hub.conf")
	if err := os.WriteFile(shadow, []byte("[[registry]]\nprefix = \"docker.io\"\nlocation = \"hub.example\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFailing(t, rm.Name, crio.Name, v1alpha1.ReasonForeignConfigWins, "registries.conf.d/zz-hub.conf sorts after regwire-every-runtime.conf and configures docker.io too")
	if err := os.Remove(shadow); err != nil {
		t.Fatal(err)
	}
	env.WaitNodes(t, rm.Name, "2/2", 10*time.Second)

	// Docker Engine cannot mirror ghcr.io: the node trusts the mirror's own host and says
	// what Docker does with ghcr.io instead, without failing the mirror; a node without a
	// Docker root says which manager flag adds it.
	dockerHost := strings.TrimPrefix(endpoint, "https://")
	docker := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "docker-hub-on-docker"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: v1alpha1.RegistryHost(dockerHost), CABundle: ca.PEM, NodeSelector: labels,
			MirrorOf: []v1alpha1.UpstreamMirror{{Host: "ghcr.io"}}, Runtimes: []v1alpha1.ContainerRuntime{v1alpha1.RuntimeDocker},
		},
	}
	if err := env.Create(ctx, docker); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, docker) })
	waitFailing(t, docker.Name, crio.Name, v1alpha1.ReasonRuntimeUnsupported, "add docker to the manager's --agent-runtimes")
	envtest.Eventually(t, func() error {
		got := &v1alpha1.RegistryMirror{}
		if err := env.Get(ctx, client.ObjectKeyFromObject(docker), got); err != nil {
			return err
		}
		if got.Status.Nodes == nil || got.Status.Nodes.Ready != 1 {
			return fmt.Errorf("status.nodes %+v: want the Docker node ready", got.Status.Nodes)
		}
		return nil
	})
	if b, err := os.ReadFile(filepath.Join(ctrd.DockerRoot, dockerHost, "ca.crt")); err != nil || string(b) != ca.PEM {
		t.Errorf("Docker's certs.d/%s/ca.crt: %v", dockerHost, err)
	}
	if _, err := os.Stat(filepath.Join(ctrd.DockerRoot, "ghcr.io")); !os.IsNotExist(err) {
		t.Errorf("Docker's certs.d/ghcr.io was written (%v): the mirror's CA is not ghcr.io's", err)
	}
	rn := &v1alpha1.RegistryNode{}
	if err := env.Get(ctx, client.ObjectKey{Name: ctrd.Name}, rn); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rn.Status.Mirrors, func(m v1alpha1.NodeMirrorStatus) bool { return m.Name == docker.Name })
	if i < 0 || rn.Status.Mirrors[i].Error != "" || len(rn.Status.Mirrors[i].Notes) != 1 ||
		!strings.Contains(rn.Status.Mirrors[i].Notes[0], "docker: spec.mirrorOf: Docker Engine sends only Docker Hub pulls to a mirror") ||
		!strings.Contains(rn.Status.Mirrors[i].Notes[0], "pulls of ghcr.io go to those registries themselves") {
		t.Errorf("the Docker node's report of %s: %+v", docker.Name, rn.Status.Mirrors)
	}
}

// TestAContainerdBefore21SaysItTakesNoDialTimeout: a node whose containerd is older than
// 2.1 applies the mirror and notes that a dead endpoint costs it containerd's own connect
// timeout; a 2.4 node notes nothing.
func TestAContainerdBefore21SaysItTakesNoDialTimeout(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "dial test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	endpoint := testutil.ChallengeServer(t, ca).URL
	labels := map[string]string{"dial-test": "true"}
	old := agenttest.Start(t, env.Config, env, "dial-containerd-17", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: time.Hour, Labels: labels, RuntimeVersion: "containerd://1.7.13"})
	current := agenttest.Start(t, env.Config, env, "dial-containerd-24", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: time.Hour, Labels: labels, RuntimeVersion: "containerd://2.4.2"})
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "dial-notes"},
		Spec: v1alpha1.RegistryMirrorSpec{
			Host: "dial.local", Endpoint: endpoint, CABundle: ca.PEM, NodeSelector: labels,
			FallbackEndpoints: []v1alpha1.EndpointURL{v1alpha1.EndpointURL(endpoint)},
		},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, rm) })
	env.WaitNodes(t, rm.Name, "2/2", 10*time.Second)
	for node, want := range map[string]string{old.Name: "containerd: spec.dialTimeout: containerd 1.7.13 takes no dial_timeout (2.1 and later do)", current.Name: ""} {
		rn := &v1alpha1.RegistryNode{}
		if err := env.Get(ctx, client.ObjectKey{Name: node}, rn); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(rn.Status.Mirrors, func(m v1alpha1.NodeMirrorStatus) bool { return m.Name == rm.Name })
		if i < 0 {
			t.Fatalf("%s reports no %s", node, rm.Name)
		}
		notes := rn.Status.Mirrors[i].Notes
		if (want == "") != (len(notes) == 0) || (want != "" && !strings.Contains(notes[0], want)) {
			t.Errorf("%s notes %q, want %q", node, notes, want)
		}
	}
	hosts, err := os.ReadFile(filepath.Join(old.Root, "dial.local", "hosts.toml"))
	if err != nil || !strings.Contains(string(hosts), "dial_timeout = '200ms'") {
		t.Errorf("hosts.toml (%v):\n%s\nwant dial_timeout written anyway: containerd before 2.1 ignores the key", err, hosts)
	}
}

// TestConfigPathNotSetIsReportedWithinOneProbeInterval gives a node a containerd
// configuration that does not read the agent's root: the mirror reports
// ConfigPathNotSet for that node, naming the file and the line, within one resync; once
// the file is fixed, the node is ready.
func TestConfigPathNotSetIsReportedWithinOneProbeInterval(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "config_path test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	endpoint := testutil.ChallengeServer(t, ca).URL
	labels := map[string]string{"config-path-test": "true"}
	debian := "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n"
	n := agenttest.Start(t, env.Config, env, "config-path-node", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels, RuntimeVersion: "containerd://1.6.20", ContainerdConfig: &debian})

	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "config-path"},
		Spec:       v1alpha1.RegistryMirrorSpec{Host: "cp.local", Endpoint: endpoint, CABundle: ca.PEM, NodeSelector: labels},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, rm) })
	start := time.Now()
	f := waitFailing(t, rm.Name, n.Name, v1alpha1.ReasonConfigPathNotSet, n.ContainerdConfig, `config_path = "`+n.Root+`"`, `[plugins."io.containerd.grpc.v1.cri".registry]`)
	t.Logf("reported in %s: %s", time.Since(start).Round(time.Millisecond), f.Message)
	if _, err := os.Stat(filepath.Join(n.Root, "cp.local", "hosts.toml")); err != nil {
		t.Errorf("the files are written all the same, for when containerd is fixed: %v", err)
	}

	fixed := "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"" + n.Root + "\"\n"
	if err := os.WriteFile(n.ContainerdConfig, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	env.WaitNodes(t, rm.Name, "1/1", 5*time.Second)
	t.Logf("ready %s after the fix", time.Since(start).Round(time.Millisecond))
}

// TestAMirrorThatRefusesAnonymousPullsIsReported points mirrorOf docker.io at a Nexus
// proxy path that wants credentials: runtimes would reach it without any (kubelet's pull
// secret is for docker.io), so the node reports MirrorRefusesAnonymousPulls with the fix
// instead of a Ready mirror that is silently skipped.
func TestAMirrorThatRefusesAnonymousPullsIsReported(t *testing.T) {
	ctx := context.Background()
	nx := nexusemulator.New("pw")
	nx.AddDockerHosted(nexusemulator.DockerHosted{Name: "docker-proxy", ForceBasicAuth: true, PathEnabled: true})
	srv := httptest.NewTLSServer(nx)
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	labels := map[string]string{"anonymous-test": "true"}
	n := agenttest.Start(t, env.Config, env, "anonymous-node", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels})
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "needs-credentials"},
		Spec: v1alpha1.RegistryMirrorSpec{Host: "nexus.local", Endpoint: srv.URL, CABundle: ca, NodeSelector: labels, SkipFallback: true,
			MirrorOf: []v1alpha1.UpstreamMirror{{Host: "docker.io", Path: "/v2/docker-proxy"}}},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, rm) })
	f := waitFailing(t, rm.Name, n.Name, v1alpha1.ReasonMirrorRefusesAnonymousPulls,
		"pulls of docker.io images reach the mirror without credentials", "with skipFallback they fail", "Allow anonymous read on the mirror's repository for docker.io")
	t.Logf("%s", f.Message)
	if _, err := os.Stat(filepath.Join(n.Root, "docker.io", "hosts.toml")); err != nil {
		t.Errorf("the files are written all the same: %v", err)
	}
}

// TestTheFirstEndpointThatAnswersServes gives a mirror a dead endpoint and a live
// fallback: nodes are ready, the RegistryNode reports both probes, and status.endpoints
// counts the node at the fallback only.
func TestTheFirstEndpointThatAnswersServes(t *testing.T) {
	ctx := context.Background()
	ca := testutil.NewCA(t, "fallback test CA", time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
	live := testutil.ChallengeServer(t, ca).URL
	dead := "https://" + testutil.FreeAddr(t) // nothing listens there
	labels := map[string]string{"fallback-test": "true"}
	n := agenttest.Start(t, env.Config, env, "fallback-node", agenttest.Options{Namespace: envtest.Namespace, HostsContent: envtest.BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels})
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "fallback"},
		Spec: v1alpha1.RegistryMirrorSpec{Host: "replicated.local", Endpoint: dead, FallbackEndpoints: []v1alpha1.EndpointURL{v1alpha1.EndpointURL(live)},
			CABundle: ca.PEM, NodeSelector: labels},
	}
	if err := env.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Delete(ctx, rm) })
	env.WaitNodes(t, rm.Name, "1/1", 10*time.Second)
	testutil.Eventually(t, 10*time.Second, "status.endpoints counting the node at the fallback", func() error {
		got := &v1alpha1.RegistryMirror{}
		if err := env.Get(ctx, client.ObjectKeyFromObject(rm), got); err != nil {
			return err
		}
		want := []v1alpha1.EndpointStatus{{URL: dead, ReachableNodes: 0}, {URL: live, ReachableNodes: 1}}
		if !slices.Equal(got.Status.Endpoints, want) {
			return fmt.Errorf("status.endpoints = %+v, want %+v", got.Status.Endpoints, want)
		}
		return nil
	})
	rn := &v1alpha1.RegistryNode{}
	if err := env.Get(ctx, client.ObjectKey{Name: n.Name}, rn); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rn.Status.Mirrors, func(m v1alpha1.NodeMirrorStatus) bool { return m.Name == rm.Name })
	if i < 0 || len(rn.Status.Mirrors[i].Endpoints) != 2 || rn.Status.Mirrors[i].Endpoints[0].Probe.Reachable || rn.Status.Mirrors[i].Endpoints[0].Probe.Error == "" {
		t.Fatalf("RegistryNode does not report the dead endpoint's probe: %+v", rn.Status.Mirrors)
	}
	toml, err := os.ReadFile(filepath.Join(n.Root, "replicated.local", "hosts.toml"))
	if err != nil || !strings.Contains(string(toml), "server = '"+live+"'") || !strings.Contains(string(toml), "[host.'"+dead+"']") {
		t.Errorf("hosts.toml does not try %s, then %s: %v\n%s", dead, live, err, toml)
	}
}
