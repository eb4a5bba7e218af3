package main

import "github.com/spf13/cobra"

func newAgentCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent that writes containerd hosts.toml, CAs and /etc/hosts entries",
		Args:  cobra.NoArgs,
		RunE:  notImplemented("agent"),
	}
}

func newSyncCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "sync SRC DST",
		Short: "Copy image tags from one registry repository to another",
		Args:  cobra.ExactArgs(2),
		RunE:  notImplemented("sync"),
	}
}

func newNodeCommand() *cobra.Command {
	node := &cobra.Command{
		Use:   "node",
		Short: "Configure a plain host (no Kubernetes) for private registries",
	}
	node.AddCommand(&cobra.Command{
		Use:   "apply -f FILE",
		Short: "Write containerd registry configuration and /etc/hosts entries from RegistryMirrors in FILE",
		Args:  cobra.NoArgs,
		RunE:  notImplemented("node apply"),
	})
	return node
}
