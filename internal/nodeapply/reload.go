package nodeapply

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/regwire/regwire/api/v1alpha1"
)

// ReloadCRIO returns a Node.Reload that sends SIGHUP to every crio process found under procRoot
// after CRI-O's files changed: crio.conf(5) documents that CRI-O reloads its registries
// configuration (and so the drop-ins and certs.d) on SIGHUP, without a restart. Other
// runtimes read their files at every pull and need nothing. With procRoot "" it does
// nothing.
func ReloadCRIO(procRoot string) func(context.Context, v1alpha1.ContainerRuntime) error {
	return func(ctx context.Context, rt v1alpha1.ContainerRuntime) error {
		if rt != v1alpha1.RuntimeCRIO || procRoot == "" {
			return nil
		}
		pids, err := findProcesses(procRoot, "crio")
		if err != nil {
			return err
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				return fmt.Errorf("asking CRI-O (pid %d) to reload its registries: %w", pid, err)
			}
			logr.FromContextOrDiscard(ctx).Info("Asked CRI-O to reload its registries", "pid", pid)
		}
		return nil
	}
}

// findProcesses lists the processes under procRoot whose command name is name.
func findProcesses(procRoot, name string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(comm)) == name {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
