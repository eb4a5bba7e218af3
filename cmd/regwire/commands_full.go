//go:build !lean

package main

import "github.com/spf13/cobra"

// fullBuildCommands are the commands beyond sync and version, in the full build: run in
// this process.
func fullBuildCommands() []*cobra.Command {
	return append([]*cobra.Command{newManagerCommand(), newAgentCommand(), newNodeCommand()}, bootstrapCommands()...)
}
