//go:build !operator && !lean

package main

import "github.com/spf13/cobra"

// bootstrapCommands are the laptop commands (bootstrap), which the operator image leaves
// out with everything they link.
func bootstrapCommands() []*cobra.Command {
	return []*cobra.Command{newBootstrapCommand()}
}
