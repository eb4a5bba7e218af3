// Command regwire wires Kubernetes clusters to private container registries. One binary
// holds every role: the operator (manager), the node agent, the image copier (sync), the
// host-side node configurator (node apply) and the bootstrapper.
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
		newBootstrapCommand(),
		newVersionCommand(),
	)
	return root
}
