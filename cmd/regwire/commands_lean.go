//go:build lean

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// FullBinary is the name of the default build that the lean build hands its other
// commands to, looked for beside the running executable and then on PATH.
const FullBinary = "regwire-full"

// fullBuildCommands are the commands beyond sync and version: each replaces this process with
// regwire-full running the same command line, so flags, signals, standard streams and
// the exit code are that process's own.
func fullBuildCommands() []*cobra.Command {
	return []*cobra.Command{
		handOver("manager", "Run the regwire operator (RegistryMirror and ImageSync controllers)"),
		handOver("agent", "Run the node agent that writes each runtime's registry configuration and /etc/hosts entries"),
		handOver("node", "Configure a plain host (no Kubernetes) for private registries"),
		handOver("bootstrap", "Stand up a private registry stack and a cluster wired to it"),
	}
}

func handOver(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              short + " (runs " + FullBinary + ")",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			full, err := findFull()
			if err != nil {
				return fmt.Errorf("%s is in the full build of regwire: %w", name, err)
			}
			return syscall.Exec(full, append([]string{full, name}, args...), os.Environ())
		},
	}
}

// findFull returns regwire-full beside this executable (symbolic links followed), else
// the one on PATH.
func findFull() (string, error) {
	if self, err := os.Executable(); err == nil {
		if self, err = filepath.EvalSymlinks(self); err == nil {
			p := filepath.Join(filepath.Dir(self), FullBinary)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
		}
	}
	p, err := exec.LookPath(FullBinary)
	if err != nil {
		return "", fmt.Errorf("%s is neither beside this executable nor on PATH: `make build` writes both into bin/, or `go build -o %s ./cmd/regwire` builds it", FullBinary, FullBinary)
	}
	return p, nil
}
