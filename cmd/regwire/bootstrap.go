package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/regwire/regwire/bootstrap/local"
	"github.com/regwire/regwire/config/samples"
)

func newBootstrapCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Stand up a private registry stack and a cluster wired to it",
	}
	for _, sub := range []struct{ use, short string }{
		{"render", "Write the certificates, nginx.conf, docker-compose.yaml and kind config"},
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
runs the regwire controllers in-process, applies the sample objects and prints their
status like 'kubectl get'. It keeps printing status changes until interrupted (Ctrl-C),
then stops everything it started.`,
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
	f.BoolVar(&opts.Once, "once", false, "print status once and stop, instead of watching until interrupted")
	return cmd
}
