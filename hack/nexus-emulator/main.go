// Command nexus-emulator serves internal/nexus/nexusemulator as a Nexus would run in its
// container: on port 8081, its first start writing admin's generated initial password to
// <data dir>/admin.password (deleted when the password changes). It stands in for
// sonatype/nexus3 where that image cannot run (the Docker end-to-end test builds it into an
// image of its own). State lives in memory: a restart is a first start again.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/regwire/regwire/internal/test/nexusemulator"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nexus-emulator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("nexus-emulator", flag.ContinueOnError)
	listen := fs.String("listen", ":8081", "address to serve on")
	dataDir := fs.String("data-dir", "/nexus-data", "where admin.password is written")
	version := fs.String("nexus-version", nexusemulator.DefaultVersion, "the Nexus version to behave as (e.g. 3.80.0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	fake := nexusemulator.New(hex.EncodeToString(buf))
	fake.SetVersion(*version)
	if err := fake.WriteAdminPasswordFile(*dataDir); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("Nexus %s (emulated) on %s; admin's initial password in %s/admin.password", *version, l.Addr(), *dataDir)
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
