//go:build operator && !lean

package main

import "github.com/spf13/cobra"

// laptopCommands: the operator image has none (see laptop.go).
func laptopCommands() []*cobra.Command { return nil }
