package main

import "github.com/spf13/cobra"

func newSyncCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "sync SRC DST",
		Short: "Copy image tags from one registry repository to another",
		Args:  cobra.ExactArgs(2),
		RunE:  notImplemented("sync"),
	}
}
