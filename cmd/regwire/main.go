// Command regwire wires Kubernetes clusters to private container registries. One binary
// holds every role: the operator (manager), the node agent, the image copier (sync), the
// host-side node configurator (node apply) and, on a laptop, the bootstrapper.
//
// Three builds of this package:
//
//   - the default build has every command;
//   - the "operator" build tag (the container image) leaves out the laptop commands
//     (bootstrap) and with them everything they link: the embedded control plane, kind,
//     kustomize, Compose and the Nexus stand-in;
//   - the "lean" build tag keeps only sync and version in-process, the commands a
//     pipeline starts once per repository: without the Kubernetes client libraries a
//     process starts in a third of the time. Its manager, agent, node and bootstrap run
//     the default build installed beside it as regwire-full (see roles_lean.go).
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
	root.AddCommand(newSyncCommand(), newVersionCommand())
	root.AddCommand(roleCommands()...)
	return root
}
