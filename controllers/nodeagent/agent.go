package nodeagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeapply"
	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/scheme"
)

// Options configure a node agent.
type Options struct {
	// NodeName is the node the agent runs on.
	NodeName string
	// Namespace is the operator namespace, where the manager publishes mirrors.
	Namespace string
	// Root is containerd's registry configuration root (config_path) on the node, as the
	// agent reaches it; "" when the agent writes no containerd configuration.
	Root string
	// CRIORoot is /etc/containers as the agent reaches it; "" when it writes no CRI-O
	// configuration.
	CRIORoot string
	// DockerRoot is /etc/docker/certs.d as the agent reaches it; "" when it writes no
	// Docker configuration.
	DockerRoot string
	// ContainerdConfig is the node's containerd configuration file as the agent reaches it
	// (read-only); "" skips the config_path check. ContainerdConfigOnHost and RootOnHost
	// are the same file and Root as the node names them (default: as given).
	ContainerdConfig, ContainerdConfigOnHost, RootOnHost string
	// HostsFile is the node's hosts file; empty leaves it alone.
	HostsFile string
	// Resync is how often the agent re-applies (repairing drift) and re-probes (default 1m).
	Resync time.Duration
	// ReportSpread spreads the reports of a cluster's agents after a change over this
	// window, each at a delay its node's name fixes (ReportDelay); 0 reports at once.
	ReportSpread time.Duration
	// Version is reported in status.agentVersion.
	Version string
	// ProcRoot is where the agent sees the node's processes (/proc with hostPID), to send
	// CRI-O SIGHUP after its registries changed; "" sends nothing.
	ProcRoot string
	// Manager holds the process's own settings: metrics and probe addresses, logger,
	// controller options. The scheme and what the cache holds (Cache.ByObject) are the
	// agent's.
	Manager ctrl.Options
}

// Agent is a node agent assembled on its own manager: what `regwire agent`, the embedded
// demo and the tests run.
type Agent struct {
	mgr   ctrl.Manager
	roots map[v1alpha1.ContainerRuntime]*nodefiles.Files
}

// New assembles a node agent: a manager whose cache holds only the published mirrors and
// the node's own Node and RegistryNode, with the Reconciler on it.
func New(cfg *rest.Config, o Options) (*Agent, error) {
	if o.NodeName == "" {
		return nil, errors.New("the node name is empty")
	}
	roots := map[v1alpha1.ContainerRuntime]*nodefiles.Files{}
	closeAll := func() {
		for _, f := range roots {
			_ = f.Close()
		}
	}
	for rt, dir := range map[v1alpha1.ContainerRuntime]string{
		v1alpha1.RuntimeContainerd: o.Root, v1alpha1.RuntimeCRIO: o.CRIORoot, v1alpha1.RuntimeDocker: o.DockerRoot,
	} {
		if dir == "" {
			continue
		}
		f, err := nodefiles.OpenFor(rt, dir)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s root %s: %w", rt, dir, err)
		}
		roots[rt] = f
	}
	if len(roots) == 0 {
		return nil, errors.New("no runtime root: give at least one of the containerd, CRI-O and Docker roots")
	}
	mo := o.Manager
	mo.Scheme = scheme.New()
	mo.Cache.ByObject = CacheByObject(o.Namespace, o.NodeName)
	mgr, err := ctrl.NewManager(cfg, mo)
	if err == nil {
		err = (&Reconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), NodeName: o.NodeName, Namespace: o.Namespace,
			Resync: o.Resync, ReportSpread: o.ReportSpread, Version: o.Version,
			Node: &nodeapply.Node{
				Roots:                  roots,
				HostsFile:              o.HostsFile,
				Reload:                 nodeapply.ReloadCRIO(o.ProcRoot),
				CRIORoot:               o.CRIORoot,
				ContainerdConfig:       o.ContainerdConfig,
				ContainerdConfigOnHost: cmp.Or(o.ContainerdConfigOnHost, o.ContainerdConfig),
				ContainerdRootOnHost:   cmp.Or(o.RootOnHost, o.Root),
			},
		}).SetupWithManager(mgr)
	}
	if err == nil {
		err = mgr.AddHealthzCheck("healthz", healthz.Ping)
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	return &Agent{mgr: mgr, roots: roots}, nil
}

// Run runs the agent until ctx is done, then closes its root.
func (a *Agent) Run(ctx context.Context) error {
	defer func() {
		for _, f := range a.roots {
			_ = f.Close()
		}
	}()
	return a.mgr.Start(ctx)
}
