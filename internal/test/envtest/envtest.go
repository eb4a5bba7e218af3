// Package envtest is the environment of the controllers' envtest suites: a real API
// server and etcd (package controlplane) with regwire's whole manager running on it in
// the test process, and the helpers those suites share. Each controller package runs its
// suite beside its code:
//
//	var env *envtest.Environment
//
//	func TestMain(m *testing.M) { os.Exit(envtest.Run(m, &env)) }
package envtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers"
	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/scheme"
	"github.com/regwire/regwire/internal/test/agenttest"
	"github.com/regwire/regwire/internal/test/controlplane"
	"github.com/regwire/regwire/internal/test/testutil"
)

// Namespace is the operator's namespace, where the controllers publish mirrors for the
// agents.
const Namespace = "regwire-system"

// BaseHosts is a node's hosts file before regwire.
const BaseHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"

// Environment is a control plane with regwire's manager running on it.
type Environment struct {
	// Client is a direct (uncached) client of the API server, as an administrator.
	client.Client
	// Config reaches the API server as an administrator.
	Config *rest.Config
}

// Run starts the control plane and the manager, sets *env, runs the package's tests and
// stops everything; its result is the exit code.
func Run(m *testing.M, env **Environment) int {
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	log := zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel()))
	ctrl.SetLogger(log)
	c, err := client.New(cp.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := controllers.NewManager(cp.Config, controllers.Options{
		Namespace: Namespace, Agent: agentdaemonset.DefaultOptions("regwire:test"), SyncProgressInterval: 200 * time.Millisecond,
		// Long enough for the copies that must stay under way, short enough for stall tests.
		CopyBounds: imagecopy.Bounds{StallTimeout: 10 * time.Second,
			// The test registries listen on 127.0.0.1; other loopback addresses stay guarded.
			SourceGuard: &registryhttp.DialGuard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Flag: "--allow-source-cidrs"}},
		Manager: ctrl.Options{Logger: log, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	*env = &Environment{Client: c, Config: cp.Config}
	return m.Run()
}

// zapLevel keeps controller logs quiet unless REGWIRE_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("REGWIRE_TEST_VERBOSE") != "" {
		return -1
	}
	return 2
}

// Eventually polls cond until it returns nil or 20s pass, then fails with its error.
func Eventually(t testing.TB, cond func() error) {
	const timeout = 20 * time.Second
	t.Helper()
	if err := testutil.Poll(timeout, 50*time.Millisecond, cond); err != nil {
		t.Fatalf("after %s: %v", timeout, err)
	}
}

// NewMirror creates a RegistryMirror for host <name>.local, changed by mutate, and deletes
// it when the test ends.
func (e *Environment) NewMirror(t testing.TB, name string, mutate func(*v1alpha1.RegistryMirror)) *v1alpha1.RegistryMirror {
	t.Helper()
	rm := &v1alpha1.RegistryMirror{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.RegistryMirrorSpec{Host: v1alpha1.RegistryHost(name + ".local")},
	}
	if mutate != nil {
		mutate(rm)
	}
	if err := e.Create(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Delete(context.Background(), rm) })
	return rm
}

// MirrorCondition waits until the controller has reported on the current generation of
// the mirror and its condition typ has the given status and reason; it returns both.
func (e *Environment) MirrorCondition(t testing.TB, name, typ string, status metav1.ConditionStatus, reason v1alpha1.ConditionReason) (*v1alpha1.RegistryMirror, metav1.Condition) {
	t.Helper()
	rm := &v1alpha1.RegistryMirror{}
	var got metav1.Condition
	Eventually(t, func() error {
		if err := e.Get(context.Background(), client.ObjectKey{Name: name}, rm); err != nil {
			return err
		}
		if rm.Status.ObservedGeneration != rm.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", rm.Status.ObservedGeneration, rm.Generation)
		}
		c := apimeta.FindStatusCondition(rm.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("no %s condition in %+v", typ, rm.Status.Conditions)
		}
		if c.Status != status || c.Reason != string(reason) {
			return fmt.Errorf("%s is %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
		}
		got = *c
		return nil
	})
	return rm, got
}

// HasEvent checks that an Event with the given reason was recorded about obj.
func (e *Environment) HasEvent(obj client.Object, reason v1alpha1.ConditionReason) error {
	list := &eventsv1.EventList{}
	if err := e.List(context.Background(), list); err != nil {
		return err
	}
	for _, ev := range list.Items {
		if ev.Regarding.UID == obj.GetUID() && ev.Reason == string(reason) {
			return nil
		}
	}
	return fmt.Errorf("no %s Event about %s among %d events", reason, obj.GetName(), len(list.Items))
}

// DeleteAndWait deletes a RegistryMirror and waits until its finalizer has let it go.
func (e *Environment) DeleteAndWait(t testing.TB, rm *v1alpha1.RegistryMirror) {
	t.Helper()
	ctx := context.Background()
	if err := e.Delete(ctx, rm); err != nil {
		t.Fatal(err)
	}
	Eventually(t, func() error {
		err := e.Get(ctx, client.ObjectKeyFromObject(rm), &v1alpha1.RegistryMirror{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("RegistryMirror %s still there (%w)", rm.Name, err)
	})
}

// Mutate applies mutate to the latest version of obj and writes it, again on a conflict
// with the controllers' own writes.
func (e *Environment) Mutate(t testing.TB, obj client.Object, mutate func()) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return e.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// CreateNamespace creates a namespace with labels.
func (e *Environment) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := e.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// StartNode creates a Node and runs an agent for it (reading the mirrors published in
// Namespace, resyncing every 300 ms) until the test ends; foreign are files in its root
// before the agent starts.
func (e *Environment) StartNode(t testing.TB, name string, labels, foreign map[string]string) *agenttest.Node {
	t.Helper()
	return e.StartNodeIn(t, Namespace, name, labels, foreign)
}

// StartNodeIn is StartNode with an agent that reads published mirrors from namespace.
func (e *Environment) StartNodeIn(t testing.TB, namespace, name string, labels, foreign map[string]string) *agenttest.Node {
	t.Helper()
	return agenttest.Start(t, e.Config, e.Client, name, agenttest.Options{Namespace: namespace, HostsContent: BaseHosts,
		Resync: 300 * time.Millisecond, Labels: labels, Files: foreign})
}

// WaitNodes waits until the mirror reports want (e.g. "3/3") nodes ready for its current
// generation and returns how long that took.
func (e *Environment) WaitNodes(t testing.TB, name, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	rm := &v1alpha1.RegistryMirror{}
	var last string
	for {
		err := e.Get(context.Background(), client.ObjectKey{Name: name}, rm)
		if err == nil && rm.Status.ObservedGeneration == rm.Generation && rm.Status.Nodes != nil && rm.Status.Nodes.Summary == want {
			c := apimeta.FindStatusCondition(rm.Status.Conditions, v1alpha1.ConditionNodesReady)
			if c != nil && c.Status == metav1.ConditionTrue {
				return time.Since(start)
			}
		}
		last = fmt.Sprintf("err=%v nodes=%+v conditions=%+v", err, rm.Status.Nodes, rm.Status.Conditions)
		if time.Since(start) > timeout {
			nodes, reports := &corev1.NodeList{}, &v1alpha1.RegistryNodeList{}
			_ = e.List(context.Background(), nodes)
			_ = e.List(context.Background(), reports)
			for _, n := range nodes.Items {
				t.Logf("node %s labels=%v taints=%v", n.Name, n.Labels, n.Spec.Taints)
			}
			for _, r := range reports.Items {
				t.Logf("report %s: %+v", r.Name, r.Status)
			}
			t.Fatalf("status.nodes did not reach %s within %s: %s", want, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReconcileCount is controller-runtime's count of reconciles of the named controller
// ("registrymirror", "imagesync") so far in this process.
func ReconcileCount(t testing.TB, controller string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// WaitForReconcile waits until the named controller has reconciled since it counted before.
func WaitForReconcile(t testing.TB, controller string, before float64) {
	t.Helper()
	Eventually(t, func() error {
		if n := ReconcileCount(t, controller); n <= before {
			return fmt.Errorf("no %s reconcile since the change (%v so far)", controller, n)
		}
		return nil
	})
}
