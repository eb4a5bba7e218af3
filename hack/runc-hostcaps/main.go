// Command runc-hostcaps is an OCI runtime wrapper for Docker hosts whose capability bounding set
// lacks capabilities Docker grants: a privileged container asks for every capability the
// kernel knows, and runc then fails with "unable to apply caps: operation not permitted"
// where the host (itself a container, say) cannot grant one of them, such as
// CAP_SYS_RESOURCE. Registered in daemon.json as a runtime, runc-hostcaps removes the capabilities
// the host cannot grant from the container's bundle (runc create and run) or from the
// process of runc exec, and then runs the real runtime with the same arguments. Every
// other capability, and everything else in the files, stays as it was.
//
// The real runtime is $RUNC_HOSTCAPS_RUNTIME, or runc on $PATH.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/regwire/regwire/internal/hostcaps"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "runc-hostcaps:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	missing, err := hostcaps.Missing()
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		for _, f := range hostcaps.Files(args) {
			if err := hostcaps.FitFile(f.Path, f.Process, missing); err != nil {
				return err
			}
		}
	}
	runtime := os.Getenv("RUNC_HOSTCAPS_RUNTIME")
	if runtime == "" {
		if runtime, err = exec.LookPath("runc"); err != nil {
			return err
		}
	}
	return syscall.Exec(runtime, append([]string{runtime}, args...), os.Environ())
}
