//go:build e2e

package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regwire/regwire/internal/test/testutil"
)

// TestSignedImagesCrossTheAirGapOnDisk runs the air-gap path with the regwire binary in a
// network namespace that has nothing but loopback (so no transparency log, trust root or
// registry beyond the two here can be reached): three repositories' images, one of each
// unsigned, go from a registry to an OCI directory with --verify-key (only signed ones and
// their signatures are written, with SHA256SUMS, which sha256sum checks); a rerun after a
// copy stopped half-way reads only what the directory lacks; the directory goes into a
// fresh registry, verified again, digest-equal; a blob corrupted on the way is named.
func TestSignedImagesCrossTheAirGapOnDisk(t *testing.T) {
	if os.Getenv("REGWIRE_E2E_AIRGAP_BIN") == "" {
		t.Setenv("REGWIRE_E2E_AIRGAP_BIN", buildRegwire(t, t.TempDir()))
	}
	if !testutil.InOwnNetwork(t, "true") {
		return
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagLoopback == 0 {
			t.Fatalf("the namespace has a network interface besides loopback: %s", i.Name)
		}
	}
	regwire := os.Getenv("REGWIRE_E2E_AIRGAP_BIN")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(regwire, args...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	src := testutil.StartRegistry(t, testutil.RegistryOptions{})
	key := testutil.NewSigningKey(t)
	work := t.TempDir()
	pub := filepath.Join(work, "cosign.pub")
	if err := os.WriteFile(pub, key.PublicPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	signed := map[string]v1.Hash{}
	for _, repo := range []string{"team/api", "team/web", "tools/lint"} {
		ref := src.Host + "/" + repo
		d := testutil.PushIndex(t, ref+":1.0", []string{"linux/amd64", "linux/arm64"}, 64<<10, 2)
		key.CosignSign(t, ref, d)
		signed[repo+":1.0"] = d
		img := testutil.PushImage(t, ref+":2.0", 64<<10, 3)
		d, _ = img.Digest()
		key.CosignSign(t, ref, d)
		signed[repo+":2.0"] = d
		testutil.PushImage(t, ref+":unsigned", 64<<10, 1)
	}

	// To the disk, every repository below the registry, signed images only. Once cold into
	// a directory of reference, to count what a whole copy reads; then into the directory
	// carried across, the first run killed after 30 blob reads (a laptop unplugged half-way)
	// and the second finishing it: it reads what the first did not store, and the signature
	// payloads, which verification reads every time.
	var mu sync.Mutex
	read := map[string]int{}
	var first *exec.Cmd
	counted := testutil.StartHostile(t, src, func(_ *testutil.Hostile, _ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			mu.Lock()
			read[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			n := 0
			for _, c := range read {
				n += c
			}
			mu.Unlock()
			if n == 30 && first != nil {
				_ = first.Process.Kill()
			}
		}
		return false
	})
	reads := func() (map[string]int, int) {
		mu.Lock()
		defer mu.Unlock()
		out, n := read, 0
		for _, c := range read {
			n += c
		}
		read = map[string]int{}
		return out, n
	}
	if out, err := run("sync", "--prefix", counted.Host(), "oci:"+filepath.Join(work, "reference"), "--all-tags", "--verify-key", pub); err == nil {
		t.Fatalf("the reference copy reported no unsigned image:\n%s", out)
	}
	payloads := 0
	coldReads, cold := reads()
	for _, n := range coldReads {
		if n > 1 {
			payloads++ // read to verify, then copied with the signature
		}
	}
	carry := filepath.Join(work, "carry")
	first = exec.Command(regwire, "sync", "--prefix", counted.Host(), "oci:"+carry, "--all-tags", "--verify-key", pub, "--jobs", "2")
	first.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	if err := first.Run(); err == nil {
		t.Fatal("the first run was not stopped")
	}
	first = nil
	_, before := reads()
	stored := 0
	for d := range coldReads {
		if _, err := os.Stat(filepath.Join(carry, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); err == nil {
			stored++
		}
	}
	out, err := run("sync", "--prefix", counted.Host(), "oci:"+carry, "--all-tags", "--verify-key", pub)
	_, after := reads()
	t.Logf("blob reads: %d for a whole copy (%d of them signature payloads read twice); %d before the kill, which stored %d blobs; %d after", cold, payloads, before, stored, after)
	if stored == 0 || after > cold-stored+payloads {
		t.Errorf("the rerun read %d blobs, more than the %d a whole copy reads less the %d the directory held (plus %d signature payloads read to verify)", after, cold, stored, payloads)
	}
	if err == nil || strings.Count(out, "SignatureNotVerified") != 3 || !strings.Contains(out, "wrote "+carry) {
		t.Fatalf("to the disk: %v\n%s", err, out)
	}
	index, _ := os.ReadFile(filepath.Join(carry, "index.json"))
	if strings.Contains(string(index), ":unsigned") {
		t.Fatalf("an unsigned image is on the disk:\n%s", index)
	}
	check := exec.Command("sha256sum", "--quiet", "-c", "SHA256SUMS")
	check.Dir = carry
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c SHA256SUMS: %v\n%s", err, b)
	}
	t.Logf("on the disk:\n%s", out)

	// The far side, in the same namespace: a fresh registry, verified again.
	far := testutil.StartRegistry(t, testutil.RegistryOptions{})
	out, err = run("sync", "--prefix", "oci:"+carry, far.Host, "--all-tags", "--verify-key", pub)
	if err != nil || !strings.Contains(out, "6 tag(s): 6 copied") {
		t.Fatalf("from the disk: %v\n%s", err, out)
	}
	for ref, d := range signed {
		got, err := remote.Head(testutil.Ref(t, far.Host+"/"+ref))
		if err != nil || got.Digest != d {
			t.Errorf("%s on the far side: %v %v, want %s", ref, got, err, d)
		}
		if _, err := remote.Head(testutil.Ref(t, far.Host+"/"+strings.Split(ref, ":")[0]+":sha256-"+d.Hex+".sig")); err != nil {
			t.Errorf("the signature of %s did not cross: %v", ref, err)
		}
	}

	// A blob corrupted on the disk is named, and its image does not get in.
	blobs, _ := filepath.Glob(filepath.Join(carry, "blobs", "sha256", "*"))
	var largest string
	var size int64
	for _, b := range blobs {
		if fi, err := os.Stat(b); err == nil && fi.Size() > size {
			largest, size = b, fi.Size()
		}
	}
	data, _ := os.ReadFile(largest)
	data[len(data)/3] ^= 0x01
	if err := os.WriteFile(largest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	other := testutil.StartRegistry(t, testutil.RegistryOptions{})
	out, err = run("sync", "--prefix", "oci:"+carry, other.Host, "--all-tags", "--verify-key", pub)
	if err == nil || !strings.Contains(out, largest+" does not hold sha256:") {
		t.Fatalf("a corrupt blob: %v\n%s", err, out)
	}
	_, named, _ := strings.Cut(out, largest)
	t.Logf("a corrupt blob is named: %s%s", largest, named[:min(len(named), 160)])
}
