package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// launchArg makes the bench binary a launcher: `bench __launch FILE argv...` runs argv and
// writes its wall time, peak RSS and CPU time to FILE. The peer is started from this small
// process rather than from the harness because Linux carries the forking process's peak
// RSS into the child's (the harness holds the image set in memory).
const launchArg = "__launch"

func launch(args []string) {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench __launch FILE argv...")
		os.Exit(2)
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var rss, cpu int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10
		cpu = syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)
	}
	if werr := os.WriteFile(args[0], fmt.Appendf(nil, "%d %d %d\n", wall.Nanoseconds(), rss, cpu), 0o600); werr != nil {
		fmt.Fprintln(os.Stderr, werr)
		os.Exit(2)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
