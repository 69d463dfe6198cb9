// Command mpha keeps a standby Tetrate Service Bridge management plane ready and turns failover
// requests into reviewed Git changes. `mpha agent` runs in each cluster; the other subcommands are
// the operator's CLI. main only wires and exits: every command returns an error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpha:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 1 for an error, or the code the error carries (doctor: 2 when a check fails).
func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
