package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regwire/regwire/internal/nexus"
	"github.com/regwire/regwire/internal/test/testutil"
)

// TestItStartsLikeNexus runs the emulator as its image does: it answers on its port, says
// its version, keeps admin's initial password in the data directory, and that file goes
// when the password changes.
func TestItStartsLikeNexus(t *testing.T) {
	data := t.TempDir()
	addr := testutil.FreeAddr(t)
	errc := make(chan error, 1)
	go func() { errc <- run([]string{"--listen", addr, "--data-dir", data, "--nexus-version", "3.84.0"}) }()
	var pw []byte
	testutil.Eventually(t, 10*time.Second, "admin.password", func() error {
		var err error
		pw, err = os.ReadFile(filepath.Join(data, "admin.password"))
		if err != nil {
			return err
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	c, err := nexus.New("http://"+addr, "admin", string(pw), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Writable(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Version(), "3.84.0") {
		t.Errorf("version %q", c.Version())
	}
	if err := c.ChangePassword(ctx, "admin", "new-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "admin.password")); !os.IsNotExist(err) {
		t.Errorf("admin.password after the change: %v", err)
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/ without credentials: %d, want 401", resp.StatusCode)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("SIGTERM did not stop it")
	}
}
