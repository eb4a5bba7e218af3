//go:build operator && !lean

package main

import "github.com/spf13/cobra"

// bootstrapCommands: the operator image has none (see commands_bootstrap.go).
func bootstrapCommands() []*cobra.Command { return nil }
