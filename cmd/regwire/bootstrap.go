package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/regwire/regwire/bootstrap"
	"github.com/regwire/regwire/bootstrap/local"
	"github.com/regwire/regwire/config/samples"
)

func newBootstrapCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Stand up a private registry stack and a cluster wired to it",
	}
	cmd.AddCommand(newBootstrapRenderCommand())
	for _, sub := range []struct{ use, short string }{
		{"up", "Start Nexus + nginx with Docker Compose and a kind cluster wired to them"},
		{"down", "Stop and remove what up started"},
		{"status", "Show the state of the bootstrap stack"},
	} {
		cmd.AddCommand(&cobra.Command{Use: sub.use, Short: sub.short, Args: cobra.NoArgs, RunE: notImplemented("bootstrap " + sub.use)})
	}
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
			opts.Scheme = newScheme()
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
		stateDir string
		hosts    []string
		ips      []string
		keyType  string
		o        bootstrap.RenderOptions
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
					return fmt.Errorf("--ip %q: not an IP address", s)
				}
				o.PKI.IPs = append(o.PKI.IPs, ip)
			}
			o.PKI.KeyType = bootstrap.KeyType(keyType)
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
	return cmd
}
