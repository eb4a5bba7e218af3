//go:build !lean

package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/controllers/nodeagent"
	"github.com/regwire/regwire/internal/version"
)

func newAgentCommand() *cobra.Command {
	var (
		nodeName, namespace, root, hostsFile string
		o                                    nodeagent.Options
		metricsAddr, probeAddr               string
		resync                               time.Duration
	)
	zapOpts := zap.Options{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent that writes each runtime's registry configuration and /etc/hosts entries",
		Long: `The node agent runs on every node (the regwire-agent DaemonSet, created by the
manager). It applies the RegistryMirrors the manager publishes for its node in the
format of the node's container runtime (or of each mirror's spec.runtimes): containerd
hosts.toml and CAs under --root, CRI-O drop-ins and certs.d under --crio-root, Docker
certs.d under --docker-root; keeps the hosts file; probes each registry from the node;
and reports in the node's RegistryNode.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodeName == "" {
				return usage(errors.New("--node-name is empty: set it, or NODE_NAME (the DaemonSet sets it from spec.nodeName)"))
			}
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("loading kubeconfig: %w", err)
			}
			o.NodeName, o.Namespace, o.Root, o.HostsFile = nodeName, namespace, root, hostsFile
			o.Resync, o.Version = resync, version.Get().Version
			o.Manager = ctrl.Options{Metrics: metricsserver.Options{BindAddress: metricsAddr}, HealthProbeBindAddress: probeAddr}
			a, err := nodeagent.New(cfg, o)
			if err != nil {
				return fmt.Errorf("starting the agent (--root, --node-name): %w", err)
			}
			ctrl.Log.WithName("setup").Info("Starting regwire agent", "node", nodeName, "root", root, "crioRoot", o.CRIORoot,
				"dockerRoot", o.DockerRoot, "containerdConfig", o.ContainerdConfig, "hostsFile", hostsFile)
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodeName, "node-name", envOr("NODE_NAME", ""), "the node this agent runs on")
	f.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", "regwire-system"), "the operator namespace, where the manager publishes mirrors")
	f.StringVar(&root, "root", "/etc/containerd/certs.d", `containerd's registry configuration root (config_path); "" writes no containerd configuration`)
	f.StringVar(&o.RootOnHost, "root-on-host", "", "the node's name for --root, when the agent reaches it elsewhere (default: --root)")
	f.StringVar(&o.ContainerdConfig, "containerd-config", "", `the node's containerd configuration file, read to report ConfigPathNotSet; "" skips the check`)
	f.StringVar(&o.ContainerdConfigOnHost, "containerd-config-on-host", "", "the node's name for --containerd-config (default: --containerd-config)")
	f.StringVar(&o.CRIORoot, "crio-root", "", `/etc/containers for CRI-O, podman and skopeo (registries.conf.d, certs.d); "" writes none`)
	f.StringVar(&o.DockerRoot, "docker-root", "", `Docker Engine's certs.d (/etc/docker/certs.d); "" writes none`)
	f.StringVar(&o.ProcRoot, "proc-root", "", `where the node's processes are seen (/proc with hostPID), to send CRI-O SIGHUP after its registries changed; "" sends none`)
	f.StringVar(&hostsFile, "hosts-file", "/etc/hosts", `hosts file for hostAliases; "" leaves it alone`)
	f.DurationVar(&resync, "resync", time.Minute, "how often to re-apply (repairing files changed by hand) and re-probe")
	f.DurationVar(&o.ReportSpread, "report-spread", 5*time.Second, "spread the reports of the cluster's agents after a change over this window (each node at a delay its name fixes), so that thousands of nodes do not write at once; the files are written at once. 0 reports at once")
	f.StringVar(&metricsAddr, "metrics-bind-address", "0", `metrics address; "0" (the default) turns it off, as the agent shares the node's network`)
	f.StringVar(&probeAddr, "health-probe-bind-address", "0", `/healthz address; "0" turns it off`)
	goFlags := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(goFlags)
	f.AddGoFlagSet(goFlags)
	return cmd
}
