package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/regwire/regwire/internal/nodefiles"
	"github.com/regwire/regwire/internal/scheme"
)

// Options configure a node agent.
type Options struct {
	// NodeName is the node the agent runs on.
	NodeName string
	// Namespace is the operator namespace, where the manager publishes mirrors.
	Namespace string
	// Root is containerd's registry configuration root (config_path) on the node.
	Root string
	// HostsFile is the node's hosts file; empty leaves it alone.
	HostsFile string
	// Resync is how often the agent re-applies (repairing drift) and re-probes (default 1m).
	Resync time.Duration
	// Version is reported in status.agentVersion.
	Version string
	// Manager holds the process's own settings: metrics and probe addresses, logger,
	// controller options. The scheme and what the cache holds (Cache.ByObject) are the
	// agent's.
	Manager ctrl.Options
}

// Agent is a node agent assembled on its own manager: what `regwire agent`, the embedded
// demo and the tests run.
type Agent struct {
	mgr   ctrl.Manager
	files *nodefiles.Files
}

// New assembles a node agent: a manager whose cache holds only the published mirrors and
// the node's own Node and RegistryNode, with the Reconciler on it.
func New(cfg *rest.Config, o Options) (*Agent, error) {
	if o.NodeName == "" {
		return nil, errors.New("the node name is empty")
	}
	files, err := nodefiles.Open(o.Root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", o.Root, err)
	}
	mo := o.Manager
	mo.Scheme = scheme.New()
	mo.Cache.ByObject = CacheByObject(o.Namespace, o.NodeName)
	mgr, err := ctrl.NewManager(cfg, mo)
	if err == nil {
		err = (&Reconciler{
			Client: mgr.GetClient(), NodeName: o.NodeName, Namespace: o.Namespace,
			Files: files, HostsFile: o.HostsFile, Resync: o.Resync, Version: o.Version,
		}).SetupWithManager(mgr)
	}
	if err == nil {
		err = mgr.AddHealthzCheck("healthz", healthz.Ping)
	}
	if err != nil {
		_ = files.Close()
		return nil, err
	}
	return &Agent{mgr: mgr, files: files}, nil
}

// Run runs the agent until ctx is done, then closes its root.
func (a *Agent) Run(ctx context.Context) error {
	defer a.files.Close()
	return a.mgr.Start(ctx)
}
