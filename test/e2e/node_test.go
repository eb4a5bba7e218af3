//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

// notReady tolerates the taint a node without CNI keeps: this node has no pod network (every
// pod here uses hostNetwork), so it stays NotReady, on purpose, and the test says so.
var notReady = corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists}

// TestARealNodePullsFromThePrivateRegistry runs regwire the way users do, on a real node
// built here: kubelet, kube-controller-manager and kube-scheduler (from the module proxy,
// `hack/envtest.sh`) with the envtest API server, and containerd + runc. regwire's image
// (built without Docker) runs as a Deployment from dist's install; the manager creates the
// agent DaemonSet, whose pod wires containerd through its hostPath mounts; a plain pod then
// pulls nexus.local/my-docker/… with the generated pull secret and reaches Running.
//
// Pods reach the API server without kube-proxy: an e2e-only overlay gives the manager (and,
// through --agent-env, the agent) KUBERNETES_SERVICE_HOST/PORT of the API server on
// loopback, and hostNetwork. The mirror then keeps the images the pods of apps run from an
// upstream registry (imagesInUse): with the upstream stopped, a new pod still starts.
func TestARealNodePullsFromThePrivateRegistry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs kubelet and containerd: run it as root (CI does)")
	}
	begun := time.Now()
	ctx := context.Background()
	l := newLogs(t)
	work := t.TempDir()
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	assets, err := controlplane.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Fatalf("%s is missing: run `make node-binaries` (hack/envtest.sh kubelet kube-controller-manager kube-scheduler); .ci/run does", b)
		}
	}

	// kubelet keeps its device plugin socket under /var/lib/kubelet/device-plugins whatever
	// --root-dir says: remove that afterwards when this test made it.
	if _, err := os.Stat("/var/lib/kubelet"); os.IsNotExist(err) {
		t.Cleanup(func() { _ = os.RemoveAll("/var/lib/kubelet") })
	}

	// Control plane: the envtest API server with ServiceAccount admission, the controller
	// manager and the scheduler, on loopback.
	cp, kubeconfig, k8s := startControlPlane(t, work, controlplane.Options{ServiceAccountAdmission: true})
	api, _ := url.Parse(cp.Config.Host)
	apiHost, apiPort, _ := net.SplitHostPort(api.Host)
	start(t, l, "kube-controller-manager", nil, filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--controllers=*", "--use-service-account-credentials=false", "--flex-volume-plugin-dir="+filepath.Join(work, "flexvolume"), "-v=1")
	start(t, l, "kube-scheduler", nil, filepath.Join(assets, "kube-scheduler"),
		"--kubeconfig="+kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0", "-v=1")

	// Registries: one for what the node needs to start pods (pause, regwire, the upstream
	// test image), and "Nexus" behind nginx as in the real-parts e2e.
	local := testutil.StartRegistry(t, testutil.RegistryOptions{})
	l.add("registry local", local.Log)
	// An upstream registry whose images pods run without an ImageSync (images in use).
	upstream := testutil.StartRegistry(t, testutil.RegistryOptions{})
	l.add("registry upstream", upstream.Log)
	const nexusUser, nexusPassword = "admin", "e2e-node-nexus-password"
	priv := startPrivateRegistry(t, l, work, nexusUser, nexusPassword)
	priv.createRepository(t, "my-docker")
	host := priv.host

	pause := local.Host + "/pause:e2e"
	waitingImage(t, pause, "", runtimeArch())
	waitingImage(t, local.Host+"/library/hello:1.0", "hello from a real node", "amd64", "arm64")
	const worldLine = "hello from upstream, kept at the mirror"
	waitingImage(t, upstream.Host+"/library/world:1.0", worldLine, "amd64", "arm64")
	regwireImage := local.Host + "/regwire:e2e"
	buildRegwireImage(t, "v0.0.0-e2e-node", filepath.Join(work, "image"), regwireImage)

	// The node: containerd (config_path = the directory the agent's hostPath mounts, which
	// already holds the local registry's entry) and kubelet.
	certsDir := filepath.Join(work, "certs.d")
	localDir := filepath.Join(certsDir, local.Host)
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		t.Fatal(err)
	}
	localHosts := []byte(fmt.Sprintf("server = \"http://%s\"\n", local.Host))
	if err := os.WriteFile(filepath.Join(localDir, "hosts.toml"), localHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	hostsBefore, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restoreHosts(t, hostsBefore) })
	ctrd := startContainerdWith(t, l, filepath.Join(work, "containerd"), certsDir, pause)
	kubeletDir := filepath.Join(work, "kubelet")
	podLogs := filepath.Join(work, "pod-logs")
	t.Cleanup(func() { // before the temporary directory goes
		if t.Failed() {
			t.Logf("==== pod logs (manager, agent, test pod) ====\n%s", podLogDump(podLogs))
		}
	})
	startKubelet(t, l, ctrd, kubeletDir, podLogs, kubeconfig)
	testutil.Eventually(t, 2*time.Minute, "the node registering", func() error {
		return k8s.Get(ctx, client.ObjectKey{Name: e2eNodeName}, &corev1.Node{})
	})
	node := &corev1.Node{}
	_ = k8s.Get(ctx, client.ObjectKey{Name: e2eNodeName}, node)
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			t.Logf("node %s Ready=%s (%s): expected without a CNI plugin; every pod here uses hostNetwork and tolerates not-ready", e2eNodeName, c.Status, c.Message)
		}
	}

	// regwire, as users install it, plus the e2e overlay.
	objs, err := config.Install(regwireImage)
	if err != nil {
		t.Fatal(err)
	}
	probePort := strings.Split(testutil.FreeAddr(t), ":")[1]
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			e2eOverlay(t, o, apiHost, apiPort, probePort, certsDir, filepath.Join(work, "containerd", "config.toml"))
		}
	}
	applyAll(t, k8s, objs)
	testutil.Eventually(t, 3*time.Minute, "the manager Deployment available", func() error {
		d := &appsv1.Deployment{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "regwire-system", Name: "regwire-manager"}, d); err != nil {
			return err
		}
		if d.Status.AvailableReplicas < 1 {
			return fmt.Errorf("available %d; %s", d.Status.AvailableReplicas, podsSummary(ctx, k8s, "regwire-system"))
		}
		return nil
	})
	t.Logf("the manager runs as a Deployment pod (%s)", time.Since(begun).Round(time.Second))

	// The manual setup's last step: a pod pulling from nexus.local.
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{"regwire.dev/pull-from-nexus": "true"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "regwire-system", Name: "nexus-credentials"}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"username": nexusUser, "password": nexusPassword}},
	} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: "nexus-local"},
		Spec: v1alpha1.RegistryMirrorSpec{
			ImageSyncs: appsMayPush("my-docker/**"),
			Host:       v1alpha1.RegistryHost(host), CABundle: string(priv.ca),
			CredentialsSecretRef: &v1alpha1.SecretReference{Namespace: "regwire-system", Name: "nexus-credentials"},
			HostAliases:          []v1alpha1.HostAlias{{IP: "127.0.0.1", Hostnames: []v1alpha1.Hostname{"nexus.local"}}},
			PullSecrets: &v1alpha1.PullSecretsSpec{SecretName: "nexus-local-pull",
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"regwire.dev/pull-from-nexus": "true"}}},
			Tolerations: []corev1.Toleration{notReady},
		},
	}
	if err := k8s.Create(ctx, rm); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Minute, "RegistryMirror Ready on the node", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
			return err
		}
		if !apimeta.IsStatusConditionTrue(rm.Status.Conditions, v1alpha1.ConditionReady) {
			return fmt.Errorf("conditions %+v; %s", rm.Status.Conditions, podsSummary(ctx, k8s, "regwire-system"))
		}
		return nil
	})
	agentPods := &corev1.PodList{}
	if err := k8s.List(ctx, agentPods, client.InNamespace("regwire-system"), client.MatchingLabels{"app.kubernetes.io/component": "agent"}); err != nil || len(agentPods.Items) != 1 || agentPods.Items[0].Status.Phase != corev1.PodRunning {
		t.Fatalf("the agent is not a running DaemonSet pod: %v %+v", err, agentPods.Items)
	}
	t.Logf("agent pod %s wrote %s (%s)", agentPods.Items[0].Name, filepath.Join(certsDir, host, "hosts.toml"), time.Since(begun).Round(time.Second))
	agentCannotWriteAnotherNodesReport(ctx, t, cp.Config, k8s, &agentPods.Items[0])
	if _, err := os.Stat(filepath.Join(certsDir, host, "ca.crt")); err != nil {
		t.Fatalf("the agent pod did not write the CA: %v", err)
	}
	requireReadOnlyPods(ctx, t, k8s)

	is := &v1alpha1.ImageSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "hello"},
		Spec: v1alpha1.ImageSyncSpec{
			Source: v1alpha1.ImageSource{Image: v1alpha1.ImageRepository(local.Host + "/library/hello"), Tags: []string{"1.0"}},
			Target: v1alpha1.ImageTarget{RegistryMirrorRef: &v1alpha1.RegistryMirrorReference{Name: rm.Name}, Repository: "my-docker/hello"},
		},
	}
	syncImage(t, k8s, is, 3*time.Minute, v1.Hash{})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "hello"},
		Spec: corev1.PodSpec{
			HostNetwork:      true,
			Tolerations:      []corev1.Toleration{notReady},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "nexus-local-pull"}},
			Containers:       []corev1.Container{{Name: "hello", Image: host + "/my-docker/hello:1.0"}},
		},
	}
	testutil.Eventually(t, time.Minute, "the pull secret in apps", func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "nexus-local-pull"}, &corev1.Secret{})
	})
	// The controller manager creates the namespace's default ServiceAccount, which
	// ServiceAccount admission wants first.
	testutil.Eventually(t, time.Minute, "creating the pod", func() error { return k8s.Create(ctx, pod.DeepCopy()) })
	testutil.Eventually(t, 3*time.Minute, "the pod Running", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s: %+v", pod.Status.Phase, pod.Status.ContainerStatuses)
		}
		return nil
	})
	line := podLogLine(t, podLogs, "apps", "hello")
	if line != "hello from a real node" {
		t.Fatalf("the pod's log says %q", line)
	}
	t.Logf("pod apps/hello pulled %s/my-docker/hello:1.0 (%s) and is Running; its log: %q (%s)", host, pod.Status.ContainerStatuses[0].ImageID, line, time.Since(begun).Round(time.Second))

	keepsTheImagesPodsRun(t, k8s, rm, priv, ctrd, upstream, upstream.Host+"/library/world:1.0", worldLine, podLogs)

	// The node's containerd configuration without config_path (as Debian's packaged
	// config.toml has it): the agent pod reads it through its read-only mount and the
	// mirror reports ConfigPathNotSet within one resync (a minute), naming the file and the
	// line. The running containerd keeps what it loaded; the file is put back after.
	confFile := filepath.Join(work, "containerd", "config.toml")
	conf, err := os.ReadFile(confFile)
	if err != nil {
		t.Fatal(err)
	}
	without := regexp.MustCompile(`(?m)^\s*config_path = .*\n`).ReplaceAll(conf, nil)
	if bytes.Equal(without, conf) {
		t.Fatalf("%s has no config_path line to take out:\n%s", confFile, conf)
	}
	if err := os.WriteFile(confFile, without, 0o600); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	testutil.Eventually(t, 90*time.Second, "ConfigPathNotSet for the node", func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), rm); err != nil {
			return err
		}
		if rm.Status.Nodes == nil || len(rm.Status.Nodes.Failing) != 1 || rm.Status.Nodes.Failing[0].Reason != v1alpha1.ReasonConfigPathNotSet {
			return fmt.Errorf("status.nodes %+v", rm.Status.Nodes)
		}
		msg := rm.Status.Nodes.Failing[0].Message
		if !strings.Contains(msg, confFile) || !strings.Contains(msg, `config_path = "`+certsDir+`"`) {
			return fmt.Errorf("the message names neither the file nor the line: %s", msg)
		}
		return nil
	})
	t.Logf("%s without config_path: ConfigPathNotSet after %s: %s", confFile, time.Since(cut).Round(time.Second), rm.Status.Nodes.Failing[0].Message)
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}

	// Delete the mirror: the agent pod cleans the node. The DaemonSet stays, by design:
	// idle agents wait for the next mirror and go with the install.
	if err := k8s.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, rm); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, "the node cleaned", func() error {
		if _, err := os.Stat(filepath.Join(certsDir, host)); !os.IsNotExist(err) {
			return fmt.Errorf("%s still there", filepath.Join(certsDir, host))
		}
		if b, _ := os.ReadFile("/etc/hosts"); !bytes.Equal(b, hostsBefore) {
			return fmt.Errorf("/etc/hosts:\n%s", b)
		}
		return nil
	})
	if b, _ := os.ReadFile(filepath.Join(localDir, "hosts.toml")); !bytes.Equal(b, localHosts) {
		t.Errorf("the unrelated hosts.toml changed: %q", b)
	}
	// As the README's uninstall says (`kubectl delete registrymirrors --all --wait`): the
	// mirror is gone, its finalizer let go by the manager, before the manager is.
	testutil.Eventually(t, 2*time.Minute, "the RegistryMirror gone after its cleanup", func() error {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(rm), &v1alpha1.RegistryMirror{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there: %s", podsSummary(ctx, k8s, "regwire-system"))
	})

	// Uninstall as users do leaves no regwire object and no agent pod: dist's way first,
	// then the chart's, with a mirror bringing the agents up in between.
	uninstallDist(t, k8s, objs)
	t.Logf("kubectl delete -f dist/install.yaml left nothing (%s)", time.Since(begun).Round(time.Second))
	helmInstallAndUninstall(t, k8s, kubeconfig, local.Host+"/regwire", "e2e",
		func(dep *unstructured.Unstructured) {
			e2eOverlay(t, dep, apiHost, apiPort, probePort, certsDir, filepath.Join(work, "containerd", "config.toml"))
		},
		&v1alpha1.RegistryMirror{ObjectMeta: metav1.ObjectMeta{Name: "after-helm-install"}, Spec: v1alpha1.RegistryMirrorSpec{
			Host: v1alpha1.RegistryHost(host), CABundle: string(priv.ca), Tolerations: []corev1.Toleration{notReady},
		}},
		filepath.Join(certsDir, host))
	t.Logf("helm uninstall left nothing (%s)", time.Since(begun).Round(time.Second))
	t.Logf("the whole flow took %s", time.Since(begun).Round(time.Second))
}

const e2eNodeName = "e2e-kubelet-node"

func runtimeArch() string {
	out, _ := exec.Command("go", "env", "GOARCH").Output()
	return strings.TrimSpace(string(out))
}

// startKubelet runs kubelet against containerd with the settings this machine needs
// (cgroup v1 with cgroupfs, swap, no QoS cgroups, no local storage isolation), serving on
// loopback only. On cleanup it stops every pod through CRI (kubelet leaves them running)
// and unmounts what it mounted.
func startKubelet(t *testing.T, l *logs, ctrd *containerd, dir, podLogs, kubeconfig string) {
	t.Helper()
	for _, d := range []string{dir, podLogs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := strings.Split(testutil.FreeAddr(t), ":")[1]
	healthz := strings.Split(testutil.FreeAddr(t), ":")[1]
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
podLogsDir: %s
serializeImagePulls: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
volumePluginDir: %s
`, port, healthz, ctrd.socket, ctrd.socket, podLogs, filepath.Join(dir, "volume-plugins"))
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	assets, _ := controlplane.AssetsDir()
	testutil.KeepFirewall(t) // kubelet adds chains of its own
	t.Cleanup(func() { cleanNode(t, ctrd, dir) })
	start(t, l, "kubelet", nil, filepath.Join(assets, "kubelet"), "--config="+cfgFile, "--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(dir, "root"), "--cert-dir="+filepath.Join(dir, "pki"),
		"--hostname-override="+e2eNodeName, "--node-ip=127.0.0.1", "-v=1")
}

// cleanNode stops and removes every pod sandbox through CRI and unmounts what kubelet
// mounted under dir.
func cleanNode(t *testing.T, ctrd *containerd, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if sbs, err := ctrd.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
		for _, sb := range sbs.Items {
			_, _ = ctrd.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id})
			_, _ = ctrd.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id})
		}
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var ours []string
	sc := bufio.NewScanner(bytes.NewReader(mounts))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 1 && strings.HasPrefix(f[1], dir) {
			ours = append(ours, f[1])
		}
	}
	for i := len(ours) - 1; i >= 0; i-- {
		if err := syscall.Unmount(ours[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", ours[i], err)
		}
	}
}

// e2eOverlay adapts the manager Deployment to a node without kube-proxy or a pod network:
// host network, the API server's loopback address for it and its agents, probes on a free
// port, the node's containerd config_path, a toleration for the NotReady node, and the
// nexus.local alias.
func e2eOverlay(t *testing.T, dep *unstructured.Unstructured, apiHost, apiPort, probePort, certsDir, containerdConfig string) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(dep.Object, d); err != nil {
		t.Fatal(err)
	}
	spec := &d.Spec.Template.Spec
	spec.HostNetwork = true
	spec.Tolerations = append(spec.Tolerations, notReady)
	// kubelet gives a hostNetwork pod a copy of the node's /etc/hosts taken when the pod
	// starts, before the agent adds nexus.local: the manager gets the alias its own way.
	spec.HostAliases = append(spec.HostAliases, corev1.HostAlias{IP: "127.0.0.1", Hostnames: []string{"nexus.local"}})
	c := &spec.Containers[0]
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: apiHost}, corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: apiPort})
	c.Args = append(c.Args,
		"--agent-env=KUBERNETES_SERVICE_HOST="+apiHost, "--agent-env=KUBERNETES_SERVICE_PORT="+apiPort,
		"--agent-containerd-certs-dir="+certsDir, "--health-probe-bind-address=127.0.0.1:"+probePort, "--metrics-bind-address=0",
		// The agent reads the node's real containerd configuration: ConfigPathNotSet would
		// keep the mirror from Ready.
		"--agent-containerd-config="+containerdConfig,
		// The test's source registry listens on the node's loopback.
		"--allow-source-cidrs=127.0.0.1/32")
	p, _ := strconv.Atoi(probePort)
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if probe != nil && probe.HTTPGet != nil {
			probe.HTTPGet.Port.IntVal = int32(p)
			probe.HTTPGet.Host = "127.0.0.1"
		}
	}
	c.Ports = nil
	c.ImagePullPolicy = corev1.PullIfNotPresent
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
	if err != nil {
		t.Fatal(err)
	}
	dep.Object = u
}

func applyAll(t *testing.T, k8s client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	for _, first := range []bool{true, false} {
		for _, o := range objs {
			if (o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition") != first {
				continue
			}
			if err := k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("e2e"), client.ForceOwnership); err != nil {
				t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
}

func podsSummary(ctx context.Context, k8s client.Client, ns string) string {
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				fmt.Fprintf(&b, " (%s: %s)", cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
		}
		b.WriteString("; ")
	}
	if b.Len() == 0 {
		return "no pods in " + ns
	}
	return b.String()
}

// podLogLine reads the first line the pod's container wrote, from the log file containerd
// writes under kubelet's pod log directory.
func podLogLine(t *testing.T, dir, ns, name string) string {
	t.Helper()
	var line string
	testutil.Eventually(t, time.Minute, "the pod's log", func() error {
		files, _ := filepath.Glob(filepath.Join(dir, ns+"_"+name+"_*", "*", "*.log"))
		if len(files) == 0 {
			return fmt.Errorf("no log under %s", dir)
		}
		b, err := os.ReadFile(files[0])
		if err != nil || len(b) == 0 {
			return fmt.Errorf("empty log %s: %w", files[0], err)
		}
		// CRI log format: <time> <stream> <tag> <message>
		first := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)[0]
		if f := strings.SplitN(first, " ", 4); len(f) == 4 {
			line = f[3]
		}
		return nil
	})
	return line
}

// waitingImage is a program that prints line (if any) and then waits for SIGTERM: a pod
// that stays Running, or a pause image.
func waitingImage(t *testing.T, ref, line string, arches ...string) {
	t.Helper()
	goImage(t, ref, fmt.Sprintf(`package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if line := %q; line != "" {
		_, _ = os.Stdout.WriteString(line + "\n")
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	<-c
}
`, line), arches...)
}

// podLogDump prints every container log under kubelet's pod log directory.
type podLogDump string

func (d podLogDump) String() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(string(d), "*", "*", "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		rel, _ := filepath.Rel(string(d), f)
		fmt.Fprintf(&b, "--- %s\n%s\n", rel, data)
	}
	return b.String()
}

// requireReadOnlyPods checks that the manager and agent pods, both running, have read-only
// root file systems and no writable volume of their own: no emptyDir, only the agent's
// certs.d and hosts file, containerd's configuration directory read-only, and the API access token
// kubelet projects.
func requireReadOnlyPods(ctx context.Context, t *testing.T, k8s client.Client) {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace("regwire-system")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range pods.Items {
		component := p.Labels["app.kubernetes.io/component"]
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s (%s) is %s", p.Name, component, p.Status.Phase)
		}
		seen[component] = true
		for _, c := range p.Spec.Containers {
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("pod %s container %s: the root file system is not read-only", p.Name, c.Name)
			}
		}
		for _, v := range p.Spec.Volumes {
			switch {
			case v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access-"):
			case v.HostPath != nil && component == "agent" && (v.HostPath.Path == certsDirOf(p) || v.HostPath.Path == "/etc/hosts"):
			case v.HostPath != nil && component == "agent" && v.Name == "containerd-config" && readOnlyMount(p, v.Name):
			default:
				t.Errorf("pod %s (%s) has volume %s: %+v; the operator build writes no file of its own", p.Name, component, v.Name, v.VolumeSource)
			}
		}
	}
	if !seen["manager"] || !seen["agent"] {
		t.Fatalf("want a running manager and agent pod, found %v", seen)
	}
	t.Logf("manager and agent pods run on read-only roots, with no emptyDir")
}

// readOnlyMount reports whether every container of p mounts volume read-only.
func readOnlyMount(p corev1.Pod, volume string) bool {
	for _, c := range p.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == volume && !m.ReadOnly {
				return false
			}
		}
	}
	return true
}

// certsDirOf is the containerd certs.d root an agent pod mounts.
func certsDirOf(p corev1.Pod) string {
	for _, v := range p.Spec.Volumes {
		if v.Name == "containerd-certs" && v.HostPath != nil {
			return v.HostPath.Path
		}
	}
	return ""
}

// agentCannotWriteAnotherNodesReport takes a token of the agent's ServiceAccount bound to
// its running pod, as kubelet gives the pod, and has it write a RegistryNode of another
// node: the API server refuses it (the install's ValidatingAdmissionPolicy, on top of RBAC
// that allows any RegistryNode). The agent's own report, which made the mirror Ready,
// went through the same policy.
func agentCannotWriteAnotherNodesReport(ctx context.Context, t *testing.T, admin *rest.Config, k8s client.Client, pod *corev1.Pod) {
	t.Helper()
	other := &v1alpha1.RegistryNode{ObjectMeta: metav1.ObjectMeta{Name: "another-node"}}
	if err := k8s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(context.Background(), other) }()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Spec.ServiceAccountName}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("a token for the agent's pod: %v", err)
	}
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = tr.Status.Token
	asAgent, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	own := &v1alpha1.RegistryNode{}
	if err := asAgent.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, own); err != nil {
		t.Fatalf("the agent's token cannot read its own RegistryNode: %v", err)
	}
	if err := asAgent.Get(ctx, client.ObjectKeyFromObject(other), other); err != nil {
		t.Fatal(err)
	}
	other.Labels = map[string]string{"forged": "yes"}
	err = asAgent.Update(ctx, other)
	if err == nil || !strings.Contains(err.Error(), "may write only its own node's RegistryNode") {
		t.Fatalf("the agent on %s updating another node's RegistryNode: %v", pod.Spec.NodeName, err)
	}
	t.Logf("the agent's token on %s may not write another node's RegistryNode: %v", pod.Spec.NodeName, err)
}
