// Command capfit is an OCI runtime wrapper for Docker hosts whose capability bounding set
// lacks capabilities Docker grants: a privileged container asks for every capability the
// kernel knows, and runc then fails with "unable to apply caps: operation not permitted"
// where the host (itself a container, say) cannot grant one of them, such as
// CAP_SYS_RESOURCE. Registered in daemon.json as a runtime, capfit removes the capabilities
// the host cannot grant from the container's bundle (runc create and run) or from the
// process of runc exec, and then runs the real runtime with the same arguments. Every
// other capability, and everything else in the files, stays as it was.
//
// The real runtime is $CAPFIT_RUNTIME, or runc on $PATH.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/regwire/regwire/internal/capfit"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "capfit:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	missing, err := capfit.Missing()
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		for _, f := range capfit.Files(args) {
			if err := capfit.FitFile(f.Path, f.Process, missing); err != nil {
				return err
			}
		}
	}
	runtime := os.Getenv("CAPFIT_RUNTIME")
	if runtime == "" {
		if runtime, err = exec.LookPath("runc"); err != nil {
			return err
		}
	}
	return syscall.Exec(runtime, append([]string{runtime}, args...), os.Environ())
}
