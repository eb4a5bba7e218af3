//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/test/testutil"
)

// kindNodeImage is the kind node image the suite runs.
const kindNodeImage = "regwire-e2e/kind-node:v1.37.2"

// The node image is assembled here rather than with kind's node-image builder: the builder
// fetches the default CNI's image (kindest/kindnetd) from the internet inside its build
// container whatever the cluster will use, and kindnetd does not build from the Go module
// proxy. Everything else is what the builder does (pkg/build/nodeimage): the Kubernetes
// binaries in /usr/bin, /kind/version, the images imported into containerd's k8s.io
// namespace without unpacking, the manifests kind applies, then a commit with kind's
// entrypoint. In place of kindnetd the node has the standard CNI plugins with a bridge
// configuration (one node), and the CNI and storage manifests hold one ConfigMap each that
// says so (kind creates them with kubectl create, which refuses an empty list).
const (
	bridgeConflist = `{
  "cniVersion": "1.0.0",
  "name": "bridge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`
	cniManifest = `apiVersion: v1
kind: ConfigMap
metadata:
  name: regwire-e2e-cni
  namespace: kube-system
data:
  cni: the standard CNI plugins with a bridge configuration, /etc/cni/net.d/10-bridge.conflist on the node
`
	storageManifest = `apiVersion: v1
kind: ConfigMap
metadata:
  name: regwire-e2e-storage
  namespace: kube-system
data:
  storage: no default StorageClass (the suite uses no volumes)
`
)

// buildKindNode loads the kind node image into d, assembling it (and caching it in
// bin/e2e-images/kind-node.tar) when its inputs changed.
func buildKindNode(t *testing.T, d *testutil.Docker) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root := testutil.RepoRoot(t)
	images := filepath.Join(root, "bin", "e2e-images")
	k8sBin := filepath.Join(root, "bin", "k8s", "linux-amd64")
	h := sha256.New()
	_, _ = io.WriteString(h, bridgeConflist+cniManifest+storageManifest)
	for _, f := range []string{filepath.Join(images, "kind-base.tar.key"), filepath.Join(images, "k8s-images.tar.key"),
		filepath.Join(k8sBin, "kubeadm"), filepath.Join(k8sBin, "kubelet"), filepath.Join(k8sBin, "kubectl")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%v: run make e2e-images", err)
		}
		h.Write(b)
	}
	key := hex.EncodeToString(h.Sum(nil))
	cache := filepath.Join(images, "kind-node.tar")
	if b, err := os.ReadFile(cache + ".key"); err == nil && string(b) == key {
		if _, err := d.Docker(ctx, "load", "-i", cache); err == nil {
			t.Logf("kind node image %s loaded from %s", kindNodeImage, cache)
			return kindNodeImage
		}
	}
	begun := time.Now()
	loadImages(t, d, "kind-base.tar")
	docker := func(args ...string) string { t.Helper(); return d.Run(t, ctx, args...) }
	const build = "kind-node-build"
	docker("run", "-d", "--name", build, "--entrypoint=sleep", "regwire-e2e/kind-base:bookworm", "infinity")
	defer func() { _, _ = d.Docker(context.Background(), "rm", "-f", "-v", build) }()
	for _, b := range []string{"kubeadm", "kubelet", "kubectl"} {
		docker("cp", filepath.Join(k8sBin, b), build+":/usr/bin/"+b)
	}
	version := strings.TrimSpace(docker("exec", build, "kubeadm", "version", "-o", "short"))
	docker("exec", build, "mkdir", "-p", "/kind/images", "/kind/manifests", "/etc/cni/net.d")
	docker("cp", filepath.Join(images, "k8s-images.tar"), build+":/kind/images/k8s-images.tar")
	write := func(path, content string) {
		t.Helper()
		cmd := exec.Command("docker", "exec", "-i", build, "sh", "-c", "cat > "+path)
		cmd.Env = append(os.Environ(), d.Env...)
		cmd.Stdin = strings.NewReader(content)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("writing %s: %v\n%s", path, err, out)
		}
	}
	write("/kind/version", version+"\n")
	write("/kind/manifests/default-cni.yaml", cniManifest)
	write("/kind/manifests/default-storage.yaml", storageManifest)
	write("/etc/cni/net.d/10-bridge.conflist", bridgeConflist)
	// What kind's containerdImporter does: containerd in the build container, the images
	// imported into the k8s.io namespace, unpacked by the node's containerd when it runs.
	docker("exec", build, "bash", "-c", "nohup containerd > /dev/null 2>&1 &")
	docker("exec", build, "bash", "-c", "for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done; ctr info >/dev/null")
	docker("exec", build, "ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--no-unpack", "--digests", "/kind/images/k8s-images.tar")
	imported := docker("exec", build, "ctr", "--namespace=k8s.io", "images", "list", "-q")
	docker("exec", build, "pkill", "containerd")
	docker("exec", build, "rm", "-rf", "/kind/images")
	docker("commit", "--change", `ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]`, build, kindNodeImage)
	docker("save", "-o", cache, kindNodeImage)
	if err := os.WriteFile(cache+".key", []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("kind node image %s (Kubernetes %s) assembled in %s with:\n%s", kindNodeImage, version, time.Since(begun).Round(time.Second), imported)
	return kindNodeImage
}

// kindHostConfig is what this host needs of a kind cluster, as kind's own config patches:
// the runc-hostcaps runtime in the nodes' containerd when the host's capability bounding set is
// short (containerd in a node starts privileged pods, kube-proxy among them), and kubelet
// on a cgroup v1 host.
func kindHostConfig(t *testing.T, d *testutil.Docker) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n")
	if d.Runtime == "runc-hostcaps" {
		// Without CAP_SYS_RESOURCE runc cannot lower a container's oom_score_adj either:
		// sandboxes fail with "can't get final child's PID from pipe" until containerd stops
		// asking (restrict_oom_score_adj).
		fmt.Fprintf(&b, "  extraMounts:\n  - hostPath: %s\n    containerPath: /usr/local/bin/runc-hostcaps\n    readOnly: true\n", dockerTools(t).RuncHostcaps)
		b.WriteString("containerdConfigPatches:\n- |-\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    BinaryName = \"/usr/local/bin/runc-hostcaps\"\n")
		b.WriteString("- |-\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    restrict_oom_score_adj = true\n")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		b.WriteString("kubeadmConfigPatches:\n- |\n  kind: KubeletConfiguration\n  failCgroupV1: false\n")
	}
	return b.String()
}

// TestBootstrapUpOnARealDockerEngine is the laptop page as one command, for real: on the
// suite's private Docker engine, with images built here (the Nexus emulator, Debian's
// nginx, the kind node image, regwire's own image) and a distribution registry standing in
// for Docker Hub, `regwire bootstrap up` starts Nexus and nginx with Compose, replaces the
// initial admin password, provisions my-docker, creates the kind cluster (with this host's
// kind config), loads and installs regwire, applies the RegistryMirror and the ImageSync,
// and runs the pod from nexus.local/my-docker/busybox. Then status, a second up that keeps
// everything, and down, which leaves nothing behind.
func TestBootstrapUpOnARealDockerEngine(t *testing.T) {
	testutil.RemoveIfCreated(t, "/lib/modules") // kind mounts it into nodes
	d := testutil.StartDocker(t, dockerTools(t))
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	begun := time.Now()
	work := t.TempDir()
	node := buildKindNode(t, d)
	loadImages(t, d, "nginx.tar", "nexus.tar", "registry.tar", "busybox.tar")
	image := loadRegwireImage(t, d, work)
	regwire := buildRegwire(t, work)
	docker := func(args ...string) string { t.Helper(); return d.Run(t, ctx, args...) }

	// Docker Hub's stand-in, on the network kind's nodes use, with busybox pushed into it
	// by docker itself.
	docker("network", "create", "kind")
	docker("run", "-d", "--name", "upstream", "--network", "kind", "-p", "127.0.0.1:5000:5000", "regwire-e2e/registry:3")
	docker("tag", "regwire-e2e/busybox:1.36", "127.0.0.1:5000/library/busybox:1.36")
	testutil.Eventually(t, time.Minute, "docker push to the upstream registry", func() error {
		_, err := d.Docker(ctx, "push", "127.0.0.1:5000/library/busybox:1.36")
		return err
	})

	state := filepath.Join(work, "state")
	kindConfig := filepath.Join(work, "kind-host.yaml")
	if err := os.WriteFile(kindConfig, []byte(kindHostConfig(t, d)), 0o600); err != nil {
		t.Fatal(err)
	}
	regwireIn := func(args ...string) string {
		t.Helper()
		start := time.Now()
		out, err := d.Command(ctx, regwire, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("regwire %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("regwire %s %s (%s):\n%s", args[0], args[1], time.Since(start).Round(time.Second), out)
		return string(out)
	}
	up := []string{"bootstrap", "up", "--state-dir", state, "--timeout", "5m",
		"--nexus-image", "regwire-e2e/nexus:emulated", "--nginx-image", "regwire-e2e/nginx:bookworm",
		"--node-image", node, "--kind-config", kindConfig, "--image", image,
		"--sync-image", "upstream:5000/library/busybox", "--sync-insecure", "--tags", "1.36"}
	first := regwireIn(up...)
	for _, want := range []string{"repository my-docker created", "create kind cluster regwire", "done: the cluster pulls from nexus.local"} {
		if !strings.Contains(first, want) {
			t.Errorf("up did not say %q", want)
		}
	}
	if strings.Contains(first, "goroutine") || strings.Contains(first, "SetLogger") {
		t.Error("up printed a stack trace")
	}
	t.Logf("from nothing to a pod pulling from nexus.local: %s (images and cluster included)", time.Since(begun).Round(time.Second))

	kubectl := func(args ...string) string {
		t.Helper()
		cmd := d.Command(ctx, filepath.Join(testutil.RepoRoot(t), "bin", "k8s", "linux-amd64", "kubectl"), args...)
		cmd.Env = append(cmd.Env, "KUBECONFIG="+filepath.Join(state, "kubeconfig"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if log := kubectl("logs", "regwire-pull-check"); !strings.Contains(log, "pulled from the private registry") {
		t.Errorf("the test pod's log: %q", log)
	}
	if pod := kubectl("get", "pod", "regwire-pull-check", "-o", "jsonpath={.spec.containers[0].image} {.status.phase}"); pod != "nexus.local/my-docker/busybox:1.36 Running" {
		t.Errorf("the test pod: %q", pod)
	}
	// kind's local-registry convention (KEP-1755), in the real cluster.
	if doc := kubectl("get", "configmap", "local-registry-hosting", "--namespace=kube-public", "-o", `jsonpath={.data.localRegistryHosting\.v1}`); !strings.Contains(doc, "host: nexus.local") || !strings.Contains(doc, "hostFromContainerRuntime: nexus.local") {
		t.Errorf("kube-public/local-registry-hosting: %q", doc)
	}
	// The node image's own parts run too: the control plane, kube-proxy (privileged) and
	// CoreDNS, all built here.
	kubectl("wait", "--for=condition=Ready", "pod", "--all", "--namespace=kube-system", "--timeout=3m")
	t.Log(kubectl("get", "registrymirrors,imagesyncs,registrynodes", "-A"))
	// A dead endpoint costs a pull its dialTimeout in containerd 2.4, then the next one serves.
	t.Log("dial timeout in the kind node: " + deadEndpointInTheKindNode(t, ctx, d, kubectl))
	// Docker Hub through Nexus: a proxy repository, pulled without credentials, then from
	// its store with the upstream stopped.
	t.Log("Docker Hub through Nexus in the kind node: " + dockerHubThroughNexusInTheKindNode(t, ctx, d, kubectl))

	status := regwireIn("bootstrap", "status", "--state-dir", state)
	for _, want := range []string{"nexus", "proxy", "regwire"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	before := docker("ps", "-q", "--no-trunc")
	again := regwireIn(up...)
	for _, want := range []string{"repository my-docker unchanged", "kind cluster regwire exists"} {
		if !strings.Contains(again, want) {
			t.Errorf("the second up did not say %q", want)
		}
	}
	if strings.Contains(again, "set a generated one") {
		t.Error("the second up replaced the password")
	}
	if after := docker("ps", "-q", "--no-trunc"); after != before {
		t.Errorf("the second up replaced containers:\n%s\nthen\n%s", before, after)
	}

	docker("rm", "-f", "upstream") // the test's own; down removes what up made
	regwireIn("bootstrap", "down", "--state-dir", state)
	if out := docker("ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left after down: %s", out)
	}
	if out := docker("volume", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("volumes left after down: %s", out)
	}
	if out := docker("network", "ls", "--format", "{{.Name}}"); strings.Join(strings.Fields(out), " ") != "bridge host none" {
		t.Errorf("networks after down: %s, want only Docker's own", out)
	}
	if out, _ := d.Command(ctx, kindBinary(t, work), "get", "clusters").CombinedOutput(); strings.TrimSpace(string(out)) != "No kind clusters found." {
		t.Errorf("kind clusters after down: %s", out)
	}
	// The state directory keeps what a later up reuses (the CA and keys, the rendered
	// files); the kubeconfig and the admin password go with the cluster and Nexus.
	entries, _ := os.ReadDir(state)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if got := strings.Join(left, " "); got != "docker-compose.yaml kind.yaml nginx.conf tls" {
		t.Errorf("the state directory after down holds %s", got)
	}
	t.Logf("the whole Docker path took %s", time.Since(begun).Round(time.Second))
}

// loadRegwireImage builds regwire's image as `make docker-image` does (hack/image, then
// docker load) and loads it into d as ghcr.io/regwire/regwire:e2e.
func loadRegwireImage(t *testing.T, d *testutil.Docker, dir string) string {
	t.Helper()
	const ref = "ghcr.io/regwire/regwire:e2e"
	archive := filepath.Join(dir, "regwire.tar")
	buildRegwireImage(t, "v0.0.0-e2e", filepath.Join(dir, "image"), "", "--docker-archive", archive, "--tag", ref)
	if _, err := d.Docker(context.Background(), "load", "-i", archive); err != nil {
		t.Fatal(err)
	}
	return ref
}

// kindBinary builds kind's CLI (the version go.mod pins) into dir.
func kindBinary(t *testing.T, dir string) string {
	t.Helper()
	kind := filepath.Join(dir, "kind")
	if _, err := os.Stat(kind); err == nil {
		return kind
	}
	build := exec.Command("go", "build", "-o", kind, "sigs.k8s.io/kind")
	build.Dir = testutil.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build kind: %v\n%s", err, out)
	}
	return kind
}
