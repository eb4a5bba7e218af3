//go:build !operator && !lean

package main

import "github.com/spf13/cobra"

// laptopCommands are the commands of the laptop CLI that the operator image leaves out.
func laptopCommands() []*cobra.Command {
	return []*cobra.Command{newBootstrapCommand()}
}
