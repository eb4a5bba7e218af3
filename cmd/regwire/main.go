// Command regwire wires Kubernetes clusters to private container registries. One binary
// holds every role: the operator (manager), the node agent, the image copier (sync), the
// host-side node configurator (node apply) and, on a laptop, the bootstrapper.
//
// Built with the "operator" build tag (as the container image is), it leaves out the
// laptop commands (bootstrap) and with them everything they link: the embedded control
// plane, kind, kustomize, Compose and the Nexus stand-in.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "regwire:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "regwire",
		Short:         "Wire Kubernetes clusters to private container registries",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newManagerCommand(),
		newAgentCommand(),
		newSyncCommand(),
		newNodeCommand(),
		newVersionCommand(),
	)
	root.AddCommand(laptopCommands()...)
	return root
}
