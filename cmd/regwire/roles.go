//go:build !lean

package main

import "github.com/spf13/cobra"

// roleCommands are the commands beyond sync and version: run in this process.
func roleCommands() []*cobra.Command {
	return append([]*cobra.Command{newManagerCommand(), newAgentCommand(), newNodeCommand()}, laptopCommands()...)
}
