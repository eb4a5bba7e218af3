// Package local runs regwire's embedded local stack: kube-apiserver and etcd (built from
// source by hack/envtest.sh), regwire's CRDs, and the regwire controllers in-process. It
// applies example objects and prints their status the way `kubectl get` does.
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/config/samples"
	"github.com/regwire/regwire/controllers"
	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/internal/imagecopy"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/test/controlplane"
)

// FieldOwner is the server-side apply field manager of objects the stack applies.
const FieldOwner = "regwire-local"

// Namespace is the operator namespace of the local stack.
const Namespace = "regwire-system"

// Options configure Run.
type Options struct {
	// Out receives progress lines and status tables.
	Out io.Writer
	// StateDir receives the kubeconfig (0600) and the controllers' log.
	StateDir string
	// Scheme knows regwire's and Kubernetes' types.
	Scheme *runtime.Scheme
	// Objects are applied once the controllers run.
	Objects []samples.Object
	// Once returns after printing status once, instead of watching until ctx ends.
	Once bool
	// Interval is how often status is checked for changes while watching.
	Interval time.Duration
	// ReconcileTimeout bounds the wait for the controllers to report on every object, and
	// (with Once) for the objects to become Ready.
	ReconcileTimeout time.Duration
	// NodeRoot is the local node's containerd registry configuration root (config_path)
	// the agent writes to; default <StateDir>/node/certs.d. Point it at a real containerd's
	// config_path to wire that containerd.
	NodeRoot string
	// HostsFile is the hosts file the agent keeps host aliases in; default
	// <StateDir>/node/hosts (never /etc/hosts unless asked).
	HostsFile string
}

// Run starts the stack, applies the objects, prints status and, unless Once, keeps
// printing changed status until ctx is done. It stops everything it started before
// returning, whatever the outcome.
func Run(ctx context.Context, opts Options) (retErr error) {
	opts.setDefaults()
	st := &stack{opts: opts, say: func(format string, args ...any) { _, _ = fmt.Fprintf(opts.Out, format+"\n", args...) }}
	defer func() { retErr = errors.Join(retErr, st.stop()) }()
	if err := st.start(ctx); err != nil {
		return err
	}
	objs := adapt(opts.Objects, st.regs, st.say)
	if err := prepare(ctx, st.client, objs, st.regs, st.say); err != nil {
		return err
	}
	for _, o := range objs {
		u := o.Object.DeepCopy()
		if err := apply(ctx, st.client, u); err != nil {
			return fmt.Errorf("applying %s: %w", o.File, err)
		}
		st.say("applied %s %s (%s)", u.GetKind(), displayName(u), o.File)
	}
	if err := waitReconciled(ctx, st.client, objs, opts.ReconcileTimeout); err != nil {
		return err
	}
	if opts.Once {
		waitReady(ctx, st.client, objs, opts.ReconcileTimeout)
	}
	return st.watch(ctx)
}

func (o *Options) setDefaults() {
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if o.ReconcileTimeout == 0 {
		o.ReconcileTimeout = 60 * time.Second
	}
	if o.NodeRoot == "" {
		o.NodeRoot = filepath.Join(o.StateDir, "node", "certs.d")
	}
	if o.HostsFile == "" {
		o.HostsFile = filepath.Join(o.StateDir, "node", "hosts")
	}
}

// stack is the running local stack: what Run started, stopped in reverse order.
type stack struct {
	opts       Options
	say        func(format string, args ...any)
	cp         *controlplane.ControlPlane
	kubeconfig string
	client     client.Client
	regs       *registries
	mgrDone    <-chan error
	agentDone  <-chan error
	stops      []func() error
}

// onStop registers what stop undoes, in reverse order of registration.
func (s *stack) onStop(f func() error) { s.stops = append(s.stops, f) }

// stop stops everything start started.
func (s *stack) stop() error {
	var errs []error
	for i := len(s.stops) - 1; i >= 0; i-- {
		errs = append(errs, s.stops[i]())
	}
	return errors.Join(errs...)
}

// start brings up the control plane, the embedded registries, the regwire controllers and
// the node agent.
func (s *stack) start(ctx context.Context) error {
	opts := s.opts
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(opts.StateDir, "manager.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	s.onStop(logFile.Close)

	s.say("starting kube-apiserver and etcd")
	if s.cp, err = controlplane.Start(controlplane.Options{}); err != nil {
		return err
	}
	s.onStop(func() error {
		s.say("stopping kube-apiserver and etcd")
		return s.cp.Stop()
	})
	if err := s.connect(ctx); err != nil {
		return err
	}

	if s.regs, err = startRegistries(ctx, opts.StateDir); err != nil {
		return fmt.Errorf("starting the embedded registries: %w", err)
	}
	s.onStop(func() error { s.regs.stop(); return nil })
	s.say("embedded registries: Nexus stand-in https://%s (TLS with %s, user %s, password in %s), upstream http://%s (library/busybox:%s)",
		s.regs.nexusAddr, filepath.Join(opts.StateDir, "tls", "ca.crt"), s.regs.user, filepath.Join(opts.StateDir, "nexus-password"),
		s.regs.upstreamAddr, strings.Join(demoTags, ", "))

	if s.mgrDone, err = s.run(ctx, "regwire controllers", func() (runner, error) { return newManager(s.cp.Config, logFile) }); err != nil {
		return err
	}
	s.say("regwire controllers running; log: %s", logFile.Name())
	if s.agentDone, err = s.run(ctx, "the node agent", func() (runner, error) {
		return newAgent(s.cp.Config, opts.NodeRoot, opts.HostsFile, logFile)
	}); err != nil {
		return err
	}
	s.say("node agent for %s running: containerd config_path %s, hosts file %s", NodeName, opts.NodeRoot, opts.HostsFile)
	return nil
}

// connect writes the kubeconfig and creates the operator namespace.
func (s *stack) connect(ctx context.Context) error {
	s.kubeconfig = filepath.Join(s.opts.StateDir, "kubeconfig")
	kc, err := s.cp.Kubeconfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.kubeconfig, kc, 0o600); err != nil {
		return err
	}
	s.say("API server ready; kubeconfig: %s", s.kubeconfig)
	if s.client, err = client.New(s.cp.Config, client.Options{Scheme: s.opts.Scheme}); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if err := s.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", Namespace, err)
	}
	return nil
}

// runner is the manager or the agent.
type runner interface{ Run(context.Context) error }

// run runs what newRunner makes until the stack stops; the channel yields its exit error.
func (s *stack) run(ctx context.Context, what string, newRunner func() (runner, error)) (<-chan error, error) {
	r, err := newRunner()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done, exit := make(chan error, 1), make(chan error, 1)
	go func() {
		err := r.Run(ctx)
		done <- err
		exit <- err
	}()
	s.onStop(func() error {
		s.say("stopping %s", what)
		cancel()
		return <-exit
	})
	return done, nil
}

// watch prints the status tables, and the node's files and host aliases, whenever they
// change (once with Once), until ctx is done or a part of the stack stops.
func (s *stack) watch(ctx context.Context) error {
	resources := []resource{{Name: "registrymirrors"}, {Name: "imagesyncs", Namespaced: true}}
	shownTables, shownNode := "", ""
	for {
		ts, err := tables(ctx, s.cp.Config, resources)
		if err != nil {
			return err
		}
		node := nodeSummary(s.opts.NodeRoot, s.opts.HostsFile)
		if key := formatTables(resources, ts, false); key != shownTables || node != shownNode {
			s.say("\n%s", formatTables(resources, ts, true))
			s.say("%s", node)
			shownTables, shownNode = key, node
			if !s.opts.Once {
				s.say("watching for changes (KUBECONFIG=%s kubectl get rm,is -A); Ctrl-C stops the stack", s.kubeconfig)
			}
		}
		if s.opts.Once {
			return nil
		}
		var stopped error
		select {
		case <-ctx.Done():
		case err := <-s.mgrDone:
			stopped = fmt.Errorf("regwire controllers stopped: %w", cmp.Or(err, errNoReason))
		case err := <-s.agentDone:
			stopped = fmt.Errorf("the node agent stopped: %w", cmp.Or(err, errNoReason))
		case <-time.After(s.opts.Interval):
			continue
		}
		select {
		case <-ctx.Done(): // Ctrl-C: the manager and the agent stop with the stack
			s.say("")
			return nil
		default:
			return stopped
		}
	}
}

// errNoReason is why a part of the stack that stopped by itself, without an error, stopped.
var errNoReason = errors.New("it ended without an error")

// newManager assembles the regwire controllers (operator namespace: Namespace) against cfg.
func newManager(cfg *rest.Config, logTo io.Writer) (runner, error) {
	log := logr.FromSlogHandler(newTextHandler(logTo))
	ctrl.SetLogger(log)
	mgr, err := controllers.NewManager(cfg, controllers.Options{
		Namespace: Namespace,
		Agent:     agentdaemonset.DefaultOptions("ghcr.io/regwire/regwire:latest"),
		// As `regwire manager --allow-source-cidrs=127.0.0.1/32`: the embedded upstream
		// registry listens on loopback; nothing else there is reachable.
		CopyBounds: imagecopy.Bounds{SourceGuard: &registryhttp.DialGuard{
			Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Flag: "--allow-source-cidrs"}},
		Manager: ctrl.Options{
			Logger:                 log,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			// The stack may run more than once in one process (tests do); each run has its
			// own control plane, so reusing controller names is harmless here.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		},
	})
	if err != nil {
		return nil, err
	}
	return managerRunner{mgr}, nil
}

type managerRunner struct{ ctrl.Manager }

func (m managerRunner) Run(ctx context.Context) error { return m.Start(ctx) }

// apply server-side applies u, defaulting namespaced objects to the default namespace.
func apply(ctx context.Context, c client.Client, u *unstructured.Unstructured) error {
	namespaced, err := c.IsObjectNamespaced(u)
	if err != nil {
		return err
	}
	if namespaced && u.GetNamespace() == "" {
		u.SetNamespace(metav1.NamespaceDefault)
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// waitReconciled waits until the controllers have written status for the current
// generation of every regwire object.
func waitReconciled(ctx context.Context, c client.Client, objs []samples.Object, timeout time.Duration) error {
	for _, o := range objs {
		want := o.Object.DeepCopy()
		if want.GroupVersionKind().Group != "regwire.dev" {
			continue
		}
		namespaced, err := c.IsObjectNamespaced(want)
		if err != nil {
			return err
		}
		if namespaced && want.GetNamespace() == "" {
			want.SetNamespace(metav1.NamespaceDefault)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(want.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			og, _, _ := unstructured.NestedInt64(got.Object, "status", "observedGeneration")
			return og == got.GetGeneration(), nil
		})
		if err != nil {
			return fmt.Errorf("waiting for the controllers to report on %s %s: %w", want.GetKind(), displayName(want), err)
		}
	}
	return nil
}

// nodeSummary lists what the agent wrote for the node: registry host directories and
// the host aliases.
func nodeSummary(root, hostsFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the node's containerd configuration (%s):\n", root)
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // a listing, best effort
		}
		if d.IsDir() && d.Name() == ".regwire" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			fmt.Fprintf(&b, "  %s\n", rel)
		}
		return nil
	})
	if hosts, err := os.ReadFile(hostsFile); err == nil {
		fmt.Fprintf(&b, "host aliases (%s):\n", hostsFile)
		for _, l := range strings.Split(string(hosts), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") && strings.Contains(l, "# ") {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// waitReady waits, at most timeout, until every regwire object's Ready condition is True.
// Objects that stay not Ready are shown as they are: their conditions say why.
func waitReady(ctx context.Context, c client.Client, objs []samples.Object, timeout time.Duration) {
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, o := range objs {
			want := o.Object
			if want.GroupVersionKind().Group != "regwire.dev" {
				continue
			}
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(want.GroupVersionKind())
			key := client.ObjectKeyFromObject(want)
			if namespaced, _ := c.IsObjectNamespaced(want); namespaced && key.Namespace == "" {
				key.Namespace = metav1.NamespaceDefault
			}
			if err := c.Get(ctx, key, got); err != nil {
				return false, nil //nolint:nilerr // keep polling until the timeout
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			ready := false
			for _, ci := range conds {
				if m, ok := ci.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
					ready = true
				}
			}
			if !ready {
				return false, nil
			}
		}
		return true, nil
	})
}

func displayName(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return u.GetNamespace() + "/" + u.GetName()
	}
	return u.GetName()
}
