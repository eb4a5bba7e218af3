//go:build !lean

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers"
	"github.com/regwire/regwire/controllers/agentdaemonset"
	"github.com/regwire/regwire/controllers/inuse"
	"github.com/regwire/regwire/internal/registryhttp"
	"github.com/regwire/regwire/internal/version"
)

func newManagerCommand() *cobra.Command {
	var (
		metricsAddr, probeAddr          string
		leaderElect                     bool
		leaderElectionID, leaderElectNS string
		agentEnv                        []string
		sourceCIDRs                     []string
		syncPeriod                      time.Duration
		lease                           = controllers.DefaultLeaseTimings()
	)
	opts := controllers.Options{Agent: agentdaemonset.DefaultOptions(defaultImage())}
	zapOpts := zap.Options{}
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the regwire operator (RegistryMirror and ImageSync controllers)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			log := ctrl.Log.WithName("setup")
			log.Info("Starting regwire manager", "version", version.Get().Version)

			if opts.Namespace == "" {
				return usage(errors.New("--namespace is empty: set it, or POD_NAMESPACE, to the operator's namespace"))
			}
			for _, kv := range agentEnv {
				name, value, ok := strings.Cut(kv, "=")
				if !ok || name == "" {
					return usage(fmt.Errorf("--agent-env %q: want NAME=VALUE", kv))
				}
				opts.Agent.Env = append(opts.Agent.Env, corev1.EnvVar{Name: name, Value: value})
			}
			guard := &registryhttp.DialGuard{Flag: "--allow-source-cidrs"}
			for _, c := range sourceCIDRs {
				p, err := netip.ParsePrefix(strings.TrimSpace(c))
				if err != nil {
					return usage(fmt.Errorf("--allow-source-cidrs %q: want a CIDR such as 127.0.0.1/32", c))
				}
				guard.Allow = append(guard.Allow, p.Masked())
			}
			opts.CopyBounds.SourceGuard = guard
			if opts.AgentReportRate < 0 {
				return usage(fmt.Errorf("--agent-report-rate %g: want reports a second, or 0 for no longer window", opts.AgentReportRate))
			}
			if opts.AgentReportRate == 0 {
				opts.AgentReportRate = -1 // Options' zero is the default
			}
			// The Deployment that runs this Pod owns the agent DaemonSet (downward API).
			opts.PodName = os.Getenv("POD_NAME")
			if opts.Identity == "" {
				if opts.Identity = opts.PodName; opts.Identity == "" {
					var err error
					if opts.Identity, err = os.Hostname(); err != nil {
						return fmt.Errorf("naming this replica for --copy-shards: %w", err)
					}
				}
			}
			if lease.RenewDeadline >= lease.LeaseDuration || lease.Tick >= lease.RenewDeadline {
				return usage(fmt.Errorf("--leader-elect-retry-period (%s) < --leader-elect-renew-deadline (%s) < --leader-elect-lease-duration (%s) is needed",
					lease.Tick, lease.RenewDeadline, lease.LeaseDuration))
			}
			// The copy shards' Leases keep leader election's timings.
			opts.ShardTimings = lease
			opts.ShardTimings.RenewInterval = lease.RenewDeadline / 2
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("loading kubeconfig: %w", err)
			}
			opts.Manager = ctrl.Options{
				Cache:                   cache.Options{SyncPeriod: &syncPeriod},
				Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
				HealthProbeBindAddress:  probeAddr,
				LeaderElection:          leaderElect,
				LeaderElectionID:        leaderElectionID,
				LeaderElectionNamespace: leaderElectNS,
				// Give up leadership at once on shutdown so a new leader starts quickly.
				LeaderElectionReleaseOnCancel: true,
				LeaseDuration:                 &lease.LeaseDuration,
				RenewDeadline:                 &lease.RenewDeadline,
				RetryPeriod:                   &lease.Tick,
			}
			mgr, err := controllers.NewManager(cfg, opts)
			if err != nil {
				return fmt.Errorf("creating manager: %w", err)
			}
			return mgr.Start(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&metricsAddr, "metrics-bind-address", ":8080", `address the Prometheus metrics endpoint binds to; "0" turns it off`)
	f.StringVar(&probeAddr, "health-probe-bind-address", ":8081", `address the /healthz and /readyz probes bind to; "0" turns them off`)
	f.BoolVar(&leaderElect, "leader-elect", false, "elect a leader so that only one replica reconciles at a time")
	f.StringVar(&leaderElectionID, "leader-election-id", "regwire-manager.regwire.dev", "name of the Lease used for leader election")
	f.StringVar(&leaderElectNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	f.DurationVar(&lease.LeaseDuration, "leader-elect-lease-duration", lease.LeaseDuration, "how long a leader, or a replica holding copy shards, keeps them after its last renewal (as kube-controller-manager's flag)")
	f.DurationVar(&lease.RenewDeadline, "leader-elect-renew-deadline", lease.RenewDeadline, "how long a leader keeps trying to renew before it stops leading, and a replica before it stops copying; less than --leader-elect-lease-duration. Raise both where the API server answers slowly at peak")
	f.DurationVar(&lease.Tick, "leader-elect-retry-period", lease.Tick, "how often non-leaders try to become leader, and replicas settle their copy shards")
	f.StringVar(&opts.Identity, "replica-name", "", "this replica's name among those sharing copies (default: $POD_NAME, else the host name)")
	f.StringVar(&opts.Namespace, "namespace", envOr("POD_NAMESPACE", "regwire-system"), "the operator's namespace: published mirrors and the agent DaemonSet live there")
	f.StringVar(&opts.Agent.Image, "agent-image", opts.Agent.Image, "image of the node agent DaemonSet")
	f.StringVar(&opts.Agent.ServiceAccount, "agent-service-account", opts.Agent.ServiceAccount, "ServiceAccount of the node agent")
	f.StringVar(&opts.Agent.ContainerdCertsDir, "agent-containerd-certs-dir", opts.Agent.ContainerdCertsDir, "containerd's config_path on the nodes")
	f.StringVar(&opts.Agent.ContainerdConfig, "agent-containerd-config", opts.Agent.ContainerdConfig, `containerd's configuration file on the nodes, read (read-only) to report ConfigPathNotSet; "" skips the check`)
	f.StringVar(&opts.Agent.CRIODir, "agent-crio-dir", opts.Agent.CRIODir, "/etc/containers on the nodes, for CRI-O (registries.conf.d, certs.d)")
	f.StringVar(&opts.Agent.DockerCertsDir, "agent-docker-certs-dir", opts.Agent.DockerCertsDir, "Docker Engine's certs.d on the nodes")
	f.Var(runtimesFlag{&opts.Agent.Runtimes}, "agent-runtimes", "container runtimes the agent writes configuration for, comma-separated: containerd, crio, docker; each mounts only its own directories (crio adds hostPID, to send CRI-O SIGHUP)")
	f.Float64Var(&opts.AgentReportRate, "agent-report-rate", controllers.DefaultAgentReportRate, "reports a second the agents of a mirror's nodes may write after a change: past what their --report-spread holds (some hundreds of nodes), the mirror tells them to spread their reports over a longer window (in 10 s steps; 50 s at 5,000 nodes by default) while the files are written at once; 0: no longer window")
	f.StringVar(&opts.Agent.HostsFile, "agent-hosts-file", opts.Agent.HostsFile, "the hosts file on the nodes")
	f.StringSliceVar(&opts.SecretNamespaces, "secret-namespaces", nil, "namespaces besides --namespace whose Secrets RegistryMirrors may name (credentials, CA, client certificates, Nexus admin), comma-separated; a mirror naming a Secret elsewhere is refused (SecretNamespaceNotAllowed)")
	addBoundsFlags(f, &opts.CopyBounds)
	f.StringSliceVar(&sourceCIDRs, "allow-source-cidrs", nil, "loopback, link-local or unspecified addresses (CIDRs, comma-separated) that ImageSync sources, their token realms and redirects may reach; refused by default, since a tenant names the source (a laptop cluster whose registry is on 127.0.0.1 needs 127.0.0.1/32)")
	f.IntVar(&opts.ConcurrentSyncs, "concurrent-syncs", 16, "ImageSyncs copying at once (per replica)")
	f.IntVar(&opts.CopyShards, "copy-shards", 0, "share the ImageSyncs' copies among every replica of the manager: cut them into this many shards, each replica holding a fair share through Leases in --namespace (the same value on every replica; 12 splits evenly over 1, 2, 3, 4 or 6 replicas); 0: the leader copies them all")
	f.IntVar(&opts.ConcurrentSyncsPerNamespace, "concurrent-syncs-per-namespace", 0, "ImageSyncs of one namespace copying at once (default half of --concurrent-syncs); a slot that frees up goes to the waiting namespace holding fewest")
	f.IntVar(&opts.InUseConcurrency, "in-use-concurrency", inuse.DefaultConcurrency, "images in use (RegistryMirror spec.imagesInUse) copied at once, across mirrors; each waits for a slot")
	f.DurationVar(&syncPeriod, "sync-period", 10*time.Hour, "how often every object is reconciled again without a change (a safety net; changes are watched)")
	f.StringToStringVar(&opts.Agent.NodeSelector, "agent-node-selector", nil, "node labels the agent DaemonSet's pods require, key=value,… (default: every node)")
	f.Var(jsonFlag{&opts.Agent.Tolerations}, "agent-tolerations", `tolerations of the agent pods as a JSON list, e.g. [{"key":"gpu","operator":"Exists"}] (default: every taint tolerated)`)
	f.StringVar(&opts.Agent.PriorityClassName, "agent-priority-class", opts.Agent.PriorityClassName, "PriorityClass of the agent pods")
	f.Var(jsonFlag{&opts.Agent.Resources}, "agent-resources", `resources of the agent container as JSON, e.g. {"requests":{"cpu":"5m","memory":"32Mi"},"limits":{"memory":"128Mi"}}`)
	f.StringArrayVar(&agentEnv, "agent-env", nil, "NAME=VALUE added to the agent's environment (repeatable), e.g. KUBERNETES_SERVICE_HOST where pods reach the API server without kube-proxy")
	goFlags := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(goFlags)
	f.AddGoFlagSet(goFlags)
	return cmd
}

// runtimesFlag is a comma-separated list of container runtimes.
type runtimesFlag struct{ rts *[]v1alpha1.ContainerRuntime }

func (f runtimesFlag) String() string {
	if f.rts == nil {
		return ""
	}
	var s []string
	for _, rt := range *f.rts {
		s = append(s, string(rt))
	}
	return strings.Join(s, ",")
}

func (f runtimesFlag) Set(v string) error {
	var out []v1alpha1.ContainerRuntime
	for _, s := range strings.Split(v, ",") {
		rt := v1alpha1.ContainerRuntime(strings.TrimSpace(s))
		switch rt {
		case v1alpha1.RuntimeContainerd, v1alpha1.RuntimeCRIO, v1alpha1.RuntimeDocker:
			if !slices.Contains(out, rt) {
				out = append(out, rt)
			}
		default:
			return fmt.Errorf("%q: want containerd, crio or docker", s)
		}
	}
	*f.rts = out
	return nil
}

func (runtimesFlag) Type() string { return "runtimes" }

// defaultImage is the regwire image of this build.
func defaultImage() string {
	tag := version.Get().Version
	if tag == "dev" {
		tag = "latest"
	}
	return "ghcr.io/regwire/regwire:" + tag
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// jsonFlag is a flag whose value is the JSON of *v (Kubernetes types such as tolerations
// and resource requirements, as Helm's toJson writes them).
type jsonFlag struct{ v any }

func (f jsonFlag) String() string {
	if f.v == nil {
		return ""
	}
	b, _ := json.Marshal(f.v)
	return string(b)
}

func (f jsonFlag) Set(s string) error {
	// The value replaces the default: nothing of it is merged in.
	v := reflect.ValueOf(f.v).Elem()
	v.Set(reflect.Zero(v.Type()))
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f.v); err != nil {
		return fmt.Errorf("want JSON: %w", err)
	}
	return nil
}

func (jsonFlag) Type() string { return "json" }
