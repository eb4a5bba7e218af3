//go:build !operator && !lean

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/spf13/cobra"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/bootstrap/local"
	"github.com/regwire/regwire/config"
	"github.com/regwire/regwire/config/samples"
	"github.com/regwire/regwire/internal/scheme"
)

func newBootstrapCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Stand up a private registry stack and a cluster wired to it",
	}
	cmd.AddCommand(newBootstrapRenderCommand())
	cmd.AddCommand(newBootstrapStackCommands()...)
	cmd.AddCommand(newBootstrapLocalCommand())
	return cmd
}

func newBootstrapLocalCommand() *cobra.Command {
	opts := local.Options{}
	var samplesDir string
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run the embedded local stack (API server, regwire controllers, samples); no Docker needed",
		Long: `Starts kube-apiserver and etcd (built by 'make envtest'), installs regwire's CRDs,
and runs in-process: the regwire controllers, one node agent, a TLS registry with the
bootstrap's certificate standing in for Nexus (with regwire's contract fake of Nexus's
REST API, so provisioning works) and an upstream registry standing in for Docker Hub,
seeded with a demo image. It points the samples at those registries, applies them and
prints their status like 'kubectl get', then what the node got. It keeps printing status
changes until interrupted (Ctrl-C), then stops everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The stack must stop the API server and etcd it started even when whoever
			// read its output is gone (Ctrl-C also ends `| tee`): without this, the first
			// write to the closed pipe would kill regwire before its cleanup.
			signal.Ignore(syscall.SIGPIPE)
			var err error
			if samplesDir != "" {
				opts.Objects, err = samples.Load(os.DirFS(samplesDir))
			} else {
				opts.Objects, err = samples.All()
			}
			if err != nil {
				return err
			}
			opts.Out = cmd.OutOrStdout()
			opts.Scheme = scheme.New()
			return local.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.StateDir, "state-dir", ".regwire/local", "directory for the kubeconfig and the controllers' log")
	f.StringVar(&samplesDir, "samples", "", "directory of YAML objects to apply (default: the built-in config/samples)")
	f.BoolVar(&opts.Once, "once", false, "print status once (after waiting for Ready) and stop, instead of watching until interrupted")
	f.StringVar(&opts.NodeRoot, "node-root", "", "containerd registry config_path the local node's agent writes to (default <state-dir>/node/certs.d; a real containerd's config_path wires that containerd)")
	f.StringVar(&opts.HostsFile, "hosts-file", "", "hosts file for host aliases (default <state-dir>/node/hosts; /etc/hosts only if you pass it)")
	return cmd
}

func newBootstrapRenderCommand() *cobra.Command {
	var (
		stateDir   string
		hosts      []string
		ips        []string
		keyType    string
		kindConfig string
		o          bootstrap.RenderOptions
	)
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Write the certificates, nginx.conf, docker-compose.yaml and kind config",
		Long: `Writes into the state directory: tls/ca.crt and tls/ca.key (a private CA), tls/server.crt and
tls/server.key (the registry's certificate, with every --host and --ip as a subject
alternative name), nginx.conf, docker-compose.yaml (Nexus + nginx) and kind.yaml. Starts
nothing. A rerun keeps the CA and the keys, and issues the certificate again only when its
names change or it nears its end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.PKI.DNSNames = hosts
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usage(fmt.Errorf("--ip %q: not an IP address", s))
				}
				o.PKI.IPs = append(o.PKI.IPs, ip)
			}
			o.PKI.KeyType = bootstrap.KeyType(keyType)
			if o.PKI.KeyType != bootstrap.KeyECDSA && o.PKI.KeyType != bootstrap.KeyRSA {
				return usage(fmt.Errorf("--key-type %q: want %s or %s", keyType, bootstrap.KeyECDSA, bootstrap.KeyRSA))
			}
			if len(hosts) == 0 && len(ips) == 0 {
				return usage(errors.New("the certificate needs a name: give --host or --ip"))
			}
			if kindConfig != "" {
				b, err := os.ReadFile(kindConfig)
				if err != nil {
					return usage(fmt.Errorf("--kind-config: %w", err))
				}
				o.Kind.Config = b
			}
			r, err := bootstrap.Render(stateDir, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			ca, srv := "kept", "kept"
			if r.PKI.CAIssued {
				ca = "issued"
			}
			if r.PKI.ServerIssued {
				srv = "issued"
			}
			fmt.Fprintf(out, "CA %s, server certificate %s (valid until %s)\n", ca, srv, r.PKI.NotAfter.Format(time.DateOnly))
			for _, f := range r.Files {
				fmt.Fprintf(out, "  %s\n", filepath.Join(r.Dir, f))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", ".regwire", "directory for the generated files (keys are written 0600)")
	f.StringSliceVar(&hosts, "host", []string{"nexus.local"}, "registry host name(s) the certificate carries; the first is nginx's server_name")
	f.StringSliceVar(&ips, "ip", nil, "IP address(es) the certificate carries")
	f.StringVar(&keyType, "key-type", string(bootstrap.KeyECDSA), "key type for new keys: ecdsa or rsa")
	f.IntVar(&o.Compose.HTTPSPort, "https-port", 443, "host port nginx publishes HTTPS on")
	f.IntVar(&o.Compose.HTTPPort, "http-port", 80, "host port nginx publishes HTTP on (redirects to HTTPS)")
	f.StringVar(&o.Compose.NexusImage, "nexus-image", bootstrap.DefaultNexusImage, "Nexus image")
	f.StringVar(&o.Compose.NginxImage, "nginx-image", bootstrap.DefaultNginxImage, "nginx image")
	f.StringVar(&o.Kind.Name, "cluster-name", "regwire", "kind cluster name")
	f.IntVar(&o.Kind.Workers, "workers", 1, "kind worker nodes")
	f.StringVar(&o.Kind.NodeImage, "node-image", "", "kind node image (default: the one this kind release pins)")
	f.StringVar(&kindConfig, "kind-config", "", "a kind cluster config to start from (its nodes, mounts and patches are kept; regwire adds its containerd patch)")
	return cmd
}

// newBootstrapStackCommands are up, down and status: the Docker path.
func newBootstrapStackCommands() []*cobra.Command {
	var (
		s          bootstrap.Stack
		host       string
		tags       []string
		dryRun     bool
		timeout    time.Duration
		kindConfig string
	)
	prepare := func(cmd *cobra.Command) error {
		// The Kubernetes client logs through controller-runtime, which complains (with a
		// stack) when no logger is set: the steps say what happens, errors come back.
		ctrllog.SetLogger(logr.Discard())
		if kindConfig != "" {
			b, err := os.ReadFile(kindConfig)
			if err != nil {
				return usage(fmt.Errorf("--kind-config: %w", err))
			}
			s.Render.Kind.Config = b
		}
		s.Out = cmd.OutOrStdout()
		s.Render.PKI.DNSNames = []string{host}
		s.SyncTags = tags
		s.Timeout = timeout
		if dryRun {
			bootstrap.DryRun{Out: cmd.OutOrStdout()}.Apply(&s)
			return nil
		}
		s.Docker = bootstrap.DockerCLI{}
		s.Kind = bootstrap.NewKindLibrary()
		s.NewKube = func(kubeconfig string) (bootstrap.Kube, error) { return bootstrap.NewKubeClient(kubeconfig) }
		return nil
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Start Nexus + nginx with Docker Compose and a kind cluster wired to them",
		Long: `With a Docker engine: renders the state directory (like render), starts Nexus and
nginx with docker compose and waits until Nexus is healthy, replaces Nexus's initial admin
password (read with docker compose exec) by a generated one kept in the state directory,
creates the docker (hosted) repository with path-based routing and Basic authentication,
creates the kind cluster, connects the proxy to the kind network, loads the regwire image
into the nodes, installs regwire, applies a RegistryMirror and an ImageSync, and runs a pod
from the private registry. --registry-only stops before the cluster. Running it again
keeps what exists. --dry-run prints every command and API call instead.

In an air gap, --nexus-image, --nginx-image and --node-image name images already in the
Docker engine (docker load) in place of the public ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd); err != nil {
				return err
			}
			return s.Up(cmd.Context())
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Remove what up created: the kind cluster, the compose containers, network and Nexus volume",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd); err != nil {
				return err
			}
			return s.Down(cmd.Context())
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the compose services, the kind cluster and regwire's objects in it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := prepare(cmd); err != nil {
				return err
			}
			return s.Status(cmd.Context())
		},
	}
	for _, c := range []*cobra.Command{up, down, status} {
		f := c.Flags()
		f.StringVar(&s.StateDir, "state-dir", ".regwire", "directory of the rendered files, the kubeconfig and the Nexus admin password")
		f.StringVar(&host, "host", "nexus.local", "registry host name")
		f.IntVar(&s.Render.Compose.HTTPSPort, "https-port", 443, "host port nginx publishes HTTPS on")
		f.IntVar(&s.Render.Compose.HTTPPort, "http-port", 80, "host port nginx publishes HTTP on")
		f.StringVar(&s.Render.Kind.Name, "cluster-name", "regwire", "kind cluster name")
		f.IntVar(&s.Render.Kind.Workers, "workers", 1, "kind worker nodes")
		f.BoolVar(&dryRun, "dry-run", false, "print every command and API call instead of running it")
		f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long each wait may take")
	}
	uf := up.Flags()
	uf.StringVar(&s.Image, "image", config.DefaultImage, "regwire image to load into the cluster; it must be in the Docker engine (docker pull, or make docker-image from a checkout)")
	uf.StringVar(&s.SyncImage, "sync-image", "docker.io/library/busybox", "image the ImageSync copies into Nexus")
	uf.StringSliceVar(&tags, "tags", []string{"1.36"}, "tags of --sync-image to copy; the first runs in the test pod")
	uf.StringVar(&s.Repository, "repository", "my-docker", "Nexus docker (hosted) repository")
	uf.StringVar(&s.Render.Compose.NexusImage, "nexus-image", bootstrap.DefaultNexusImage, "Nexus image (3.83.0 or later: path-based routing)")
	uf.StringVar(&s.Render.Compose.NginxImage, "nginx-image", bootstrap.DefaultNginxImage, "nginx image")
	uf.StringVar(&s.Render.Kind.NodeImage, "node-image", "", "kind node image (default: the one this kind release pins)")
	uf.BoolVar(&s.RegistryOnly, "registry-only", false, "stop once Nexus and nginx are up and the repository exists: no kind cluster")
	uf.BoolVar(&s.SyncInsecure, "sync-insecure", false, "read --sync-image over plain HTTP (a local registry without TLS)")
	uf.StringVar(&kindConfig, "kind-config", "", "a kind cluster config to start from (its nodes, mounts and patches are kept; regwire adds its containerd patch)")
	return []*cobra.Command{up, down, status}
}
