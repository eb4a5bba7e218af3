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
//     the default build installed beside it as regwire-full (see commands_lean.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "regwire:", err)
		os.Exit(exitCode(err))
	}
}

// Exit codes (README, "Exit codes"):
const (
	// exitFailed: the work was tried and some of it failed (a tag, an ImageSync, a
	// registry, a controller).
	exitFailed = 1
	// exitUsage: the command line or its input file is wrong; nothing was tried.
	exitUsage = 2
)

// usageError marks an error in the command line or its input: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// usage marks err (nil stays nil) as a usage error.
func usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	// cobra's own checks of the command line, which come back as plain errors: a command
	// that does not exist, a required flag left out, flags that exclude each other.
	for _, prefix := range []string{"unknown command ", "required flag(s) ", "if any flags in the group "} {
		if strings.HasPrefix(err.Error(), prefix) {
			return exitUsage
		}
	}
	return exitFailed
}

// argsAreUsage makes a wrong number or kind of arguments a usage error in c and every
// command below it.
func argsAreUsage(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error { return usage(check(cmd, args)) }
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "regwire",
		Short:         "Wire Kubernetes clusters to private container registries",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Unknown flags, flag values that do not parse and wrong argument counts are usage
	// errors, in every subcommand.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })
	root.AddCommand(newSyncCommand(), newVersionCommand())
	root.AddCommand(fullBuildCommands()...)
	argsAreUsage(root)
	return root
}
