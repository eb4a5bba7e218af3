//go:build scale

package scale

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/nodeagent"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// simFleet is the nodes beyond the real agents': Node objects as kubelet keeps them
// (labels, annotations, capacity, conditions, ~50 images: some 10 KB each) with kubelet's
// status heartbeat, and a lightweight agent for each that does what a real one does to the
// API server: one watch of the mirror's published ConfigMap (by name, as the real agent's
// cache does), and a report in its RegistryNode when the generation it sees changes. It
// writes no files and probes nothing: those cost the node, not the API server or the
// manager. notReady of them report their registry unreachable.
type simFleet struct {
	names    []string
	notReady int
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	reports  int   // reports written
	lastErr  error // the last report that could not be written
}

// problem is the last error a simulated agent met, for a failure to show.
func (f *simFleet) problem() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// simNode is a Node as kubelet keeps it.
func simNode(name string, ready bool) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"node.kubernetes.io/instance-type": "m6i.4xlarge", "topology.kubernetes.io/zone": "eu-west-1a", "regwire.test/fleet": "sim"},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
				"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.0.0/24"},
	}
	return withStatus(n, ready, time.Now())
}

func withStatus(n *corev1.Node, ready bool, heartbeat time.Time) *corev1.Node {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	n.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("15800m"), corev1.ResourceMemory: resource.MustParse("62Gi"), corev1.ResourcePods: resource.MustParse("110")},
		NodeInfo:    corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://2.1.4", OSImage: "Debian GNU/Linux 13", KernelVersion: "6.12.0", OperatingSystem: "linux", Architecture: "amd64"},
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: n.Name}},
	}
	for _, c := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: c, Status: corev1.ConditionFalse, LastHeartbeatTime: metav1.NewTime(heartbeat),
			Reason: "KubeletHasSufficient" + string(c), Message: "kubelet has sufficient resources available"})
	}
	n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.NewTime(heartbeat),
		Reason: "KubeletReady", Message: "kubelet is posting ready status"})
	for i := range 50 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{SizeBytes: int64(10+i) << 20, Names: []string{
			fmt.Sprintf("registry.example/platform/component-%d@sha256:%064x", i, i), fmt.Sprintf("registry.example/platform/component-%d:v1.%d.0", i, i)}})
	}
	return n
}

// startSimFleet creates n simulated nodes (the first notReady of them NotReady and
// reporting an unreachable registry) and their agents, which report on mirror once its
// published ConfigMap appears and whenever its generation changes. Node status heartbeats
// come every heartbeat (kubelet's nodeStatusReportFrequency is 5 minutes).
func startSimFleet(t *testing.T, cs kubernetes.Interface, k8s client.Client, n, notReady int, mirror string, heartbeat time.Duration) *simFleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &simFleet{notReady: notReady, cancel: cancel}
	t.Cleanup(f.stop)
	for i := range n {
		f.names = append(f.names, fmt.Sprintf("sim-%04d", i))
	}
	parallel(t, f.names, 16, func(name string, i int) error {
		return k8s.Create(ctx, simNode(name, i >= notReady))
	})
	for i, name := range f.names {
		f.wg.Go(func() { f.agent(ctx, cs, k8s, name, mirror, i >= notReady) })
	}
	f.wg.Go(func() { f.heartbeats(ctx, cs, heartbeat) })
	return f
}

func (f *simFleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// agent watches the published mirror and reports what a real agent would: the files at
// once (here: nothing), the report at the node's next turn (nodeagent.NextReport) in
// windows of the spread (the agents' own, or the longer window the mirror publishes)
// after the first change it has not reported, of the newest generation it has seen by
// then.
func (f *simFleet) agent(ctx context.Context, cs kubernetes.Interface, k8s client.Client, node, mirror string, reachable bool) {
	name := nodeconfig.PublishedName(mirror)
	var reported, seen int64
	var window time.Duration // the mirror's published report window
	var due <-chan time.Time // the pending report's turn; nil when none is pending
	for ctx.Err() == nil {
		w, err := cs.CoreV1().ConfigMaps(operatorNS).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
	events:
		for {
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					break events
				}
				cm, isCM := ev.Object.(*corev1.ConfigMap)
				if !isCM || ev.Type == watch.Deleted {
					continue
				}
				if p, _, err := nodeconfig.FromConfigMap(cm); err == nil {
					seen, window = p.Generation, p.ReportWindow()
				}
			case <-due:
				due = nil
				if err := f.report(ctx, k8s, node, mirror, seen, reachable); err == nil {
					reported = seen
				} else {
					f.mu.Lock()
					f.lastErr = fmt.Errorf("%s: %w", node, err)
					f.mu.Unlock()
				}
			}
			if seen != reported && due == nil {
				due = time.After(time.Until(nodeagent.NextReport(node, max(reportSpread, window), time.Now())))
			}
		}
		w.Stop()
	}
}

// report writes the node's RegistryNode as an agent does after applying generation gen.
func (f *simFleet) report(ctx context.Context, k8s client.Client, node, mirror string, gen int64, reachable bool) error {
	rn := &v1alpha1.RegistryNode{}
	err := k8s.Get(ctx, client.ObjectKey{Name: node}, rn)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	now := metav1.Now()
	probe := &v1alpha1.ProbeResult{Reachable: reachable, StatusCode: 401, Time: &now}
	ready, reason, msg := metav1.ConditionTrue, v1alpha1.ReasonApplied, "1 mirror(s) applied and reachable"
	if !reachable {
		probe = &v1alpha1.ProbeResult{Error: "dial tcp 10.0.0.9:443: connect: connection refused", Time: &now}
		ready, reason, msg = metav1.ConditionFalse, v1alpha1.ReasonProbeFailed, mirror+": registry not reachable"
	}
	rn.Status = v1alpha1.RegistryNodeStatus{AgentVersion: "sim", Runtime: "containerd", ConfigHash: fmt.Sprintf("sha256:%064d", gen),
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: ready, Reason: string(reason), Message: msg, LastTransitionTime: now}},
		Mirrors: []v1alpha1.NodeMirrorStatus{{Name: mirror, ObservedGeneration: gen, AppliedHash: fmt.Sprintf("sha256:%064d", gen),
			Runtimes: []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd}, Probe: probe}}}
	// As the agent writes it: created with its status, then updated whole (the kind has no
	// status subresource).
	if apierrors.IsNotFound(err) {
		rn.Name = node
		err = k8s.Create(ctx, rn)
	} else {
		err = k8s.Update(ctx, rn)
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.reports++
	f.mu.Unlock()
	return nil
}

// heartbeats updates every simulated node's status once per period, spread over it, as
// kubelets do.
func (f *simFleet) heartbeats(ctx context.Context, cs kubernetes.Interface, period time.Duration) {
	tick := time.NewTicker(max(period/time.Duration(len(f.names)), time.Millisecond))
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(f.names) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, f.names[i], metav1.GetOptions{})
		if err != nil {
			continue
		}
		_, _ = cs.CoreV1().Nodes().UpdateStatus(ctx, withStatus(n, i >= f.notReady, time.Now()), metav1.UpdateOptions{})
	}
}

// unrelatedSecrets creates n Secrets the manager has no business with, in the scale
// namespaces.
func unrelatedSecrets(t *testing.T, k8s client.Client, n int) {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("unrelated-%05d", i)
	}
	parallel(t, names, 16, func(name string, i int) error {
		return k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("scale-%d", i%10), Name: name},
			StringData: map[string]string{"token": fmt.Sprintf("%0256d", i)}})
	})
}

// parallel runs do for each name on workers goroutines; the first error fails the test.
func parallel(t *testing.T, names []string, workers int, do func(name string, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := do(names[i], i); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
