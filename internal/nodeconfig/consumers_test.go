package nodeconfig_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/testutil"
)

// writeTree writes a rendered configuration under root.
func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func errorStrings(errs []nodeconfig.MirrorError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	slices.Sort(out)
	return out
}

// TestContainersImageResolvesRenderedConfig writes every scenario in CRI-O's format to an
// /etc/containers of its own, next to a foreign registries.conf, and asks containers/image
// (the library CRI-O, podman and skopeo pull with) where it would pull each image from
// and with which CA.
func TestContainersImageResolvesRenderedConfig(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			ca := testutil.NewCA(t, "scenario CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			c := nodeconfig.RenderFor(v1alpha1.RuntimeCRIO, sc.mirrors(ca.PEM))
			if got := errorStrings(c.Errors); !slices.Equal(got, sc.crioErrors) {
				t.Errorf("errors = %q, want %q", got, sc.crioErrors)
			}
			for p := range c.Files {
				if !strings.HasPrefix(p, nodeconfig.DropInDir+"/") && !strings.HasPrefix(p, nodeconfig.CertsDir+"/") {
					t.Errorf("%s is neither a drop-in nor under certs.d", p)
				}
			}
			root := t.TempDir()
			writeTree(t, root, c.Files)
			conf := filepath.Join(root, "registries.conf")
			foreign := "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n"
			if err := os.WriteFile(conf, []byte(foreign), 0o644); err != nil {
				t.Fatal(err)
			}
			sys := &types.SystemContext{SystemRegistriesConfPath: conf, SystemRegistriesConfDirPath: filepath.Join(root, nodeconfig.DropInDir)}
			if _, err := sysregistriesv2.GetRegistries(sys); err != nil {
				t.Fatalf("containers/image refuses the configuration: %v", err)
			}
			for image, want := range sc.crio {
				ref, err := reference.ParseNormalizedNamed(image)
				if err != nil {
					t.Fatal(err)
				}
				reg, err := sysregistriesv2.FindRegistry(sys, ref.String())
				if err != nil {
					t.Fatal(err)
				}
				if reg == nil {
					t.Fatalf("%s: no [[registry]] matches", image)
				}
				sources, err := reg.PullSourcesFromReference(ref)
				if err != nil {
					t.Fatal(err)
				}
				var got []expectSource
				for _, src := range sources {
					// containers/image refuses a source whose own registry is blocked
					// (docker/docker_client.go newDockerClient) and goes on to the next.
					own, err := sysregistriesv2.FindRegistry(sys, src.Reference.String())
					if err != nil {
						t.Fatal(err)
					}
					if own != nil && own.Blocked {
						continue
					}
					got = append(got, expectSource{ref: src.Reference.String(), insecure: src.Endpoint.Insecure})
				}
				if len(got) != len(want) {
					t.Fatalf("%s is pulled from %v, want %v", image, got, want)
				}
				for i, w := range want {
					if got[i].ref != w.ref || got[i].insecure != w.insecure {
						t.Errorf("%s source %d = %+v, want %+v", image, i, got[i], w)
					}
					host := reference.Domain(mustNamed(t, w.ref))
					tlsc := &tls.Config{}
					if err := tlsclientconfig.SetupCertificates(filepath.Join(root, nodeconfig.CertsDir, host), tlsc); err != nil {
						t.Fatal(err)
					}
					if w.clientCert != (len(tlsc.Certificates) == 1) {
						t.Errorf("%s: certs.d/%s gives %d client certificates, want one: %v", image, host, len(tlsc.Certificates), w.clientCert)
					}
					if w.verifies == "" {
						continue
					}
					if tlsc.RootCAs == nil {
						t.Fatalf("%s: certs.d/%s gave containers/image no CA", image, host)
					}
					leaf := ca.Leaf(t, w.verifies)
					if _, err := leaf.Verify(x509.VerifyOptions{DNSName: w.verifies, Roots: tlsc.RootCAs}); err != nil {
						t.Errorf("%s: a certificate for %s does not verify with certs.d/%s: %v", image, w.verifies, host, err)
					}
				}
			}
		})
	}
}

func mustNamed(t *testing.T, s string) reference.Named {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDockerCertsDirTrustsTheRegistry checks the Docker format: certs.d/<host>/ca.crt,
// which Docker Engine loads for each connection to <host>.
func TestDockerCertsDirTrustsTheRegistry(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			ca := testutil.NewCA(t, "scenario CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			c := nodeconfig.RenderFor(v1alpha1.RuntimeDocker, sc.mirrors(ca.PEM))
			if got := errorStrings(c.Errors); !slices.Equal(got, sc.dockerErrors) {
				t.Errorf("errors = %q, want %q", got, sc.dockerErrors)
			}
			var notes []string
			for _, n := range c.Notes {
				notes = append(notes, n.Mirror+": "+n.Field)
			}
			if !slices.Equal(notes, sc.dockerNotes) {
				t.Errorf("notes = %q, want %q", notes, sc.dockerNotes)
			}
			root := t.TempDir()
			writeTree(t, root, c.Files)
			for host, name := range sc.docker {
				// Docker Engine's registry package reads certs.d/<host> with the same
				// rules: *.crt are CAs, *.cert/*.key client pairs.
				tlsc := &tls.Config{}
				if err := tlsclientconfig.SetupCertificates(filepath.Join(root, host), tlsc); err != nil {
					t.Fatal(err)
				}
				if tlsc.RootCAs == nil {
					t.Fatalf("certs.d/%s holds no CA", host)
				}
				wantClient := len(sc.mirrors(ca.PEM)[0].ClientCert) > 0
				if wantClient != (len(tlsc.Certificates) == 1) {
					t.Errorf("certs.d/%s gives %d client certificates, want one: %v", host, len(tlsc.Certificates), wantClient)
				}
				if _, err := ca.Leaf(t, name).Verify(x509.VerifyOptions{DNSName: name, Roots: tlsc.RootCAs}); err != nil {
					t.Errorf("certs.d/%s does not trust %s: %v", host, name, err)
				}
			}
			for p := range c.Files {
				if _, ok := sc.docker[filepath.Dir(p)]; !ok || !slices.Contains([]string{nodeconfig.CAFile, nodeconfig.ClientCertFile, nodeconfig.ClientKeyFile}, filepath.Base(p)) {
					t.Errorf("wrote %s, want only <host>/ca.crt and the client pair for %v", p, sc.docker)
				}
			}
		})
	}
}
