//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/test/testutil"
)

// throughADockerHubProxy serves docker.io through the mirror's Nexus: a proxy repository
// in front of a stand-in for Docker Hub (a distribution registry holding upstream's
// library/hello:1.0), provisioned with anonymous read of the proxy only. containerd pulls
// docker.io/library/hello:1.0 without credentials, as runtimes pull from a mirror, through
// nginx and the proxy; a pull of the hosted repository without credentials is refused;
// once the stand-in is gone a containerd with a fresh root still pulls the image, from the
// proxy's store. The mirror serves docker.io no more at the end.
func throughADockerHubProxy(t *testing.T, l *logs, k8s client.Client, priv *privateRegistry, ctrd *containerd, mirror, hosted, upstreamImage, work, certsDir string) {
	t.Helper()
	hub := testutil.StartRegistry(t, testutil.RegistryOptions{})
	l.add("registry docker hub", hub.Log)
	idx, err := remote.Index(testutil.Ref(t, upstreamImage))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(testutil.Ref(t, hub.Host+"/library/hello:1.0"), idx); err != nil {
		t.Fatal(err)
	}
	setProxy(t, k8s, mirror, func(p *v1alpha1.NexusProvision, rm *v1alpha1.RegistryMirror) {
		rm.Spec.MirrorOf = []v1alpha1.UpstreamMirror{{Host: "docker.io"}}
		p.Proxies = []v1alpha1.NexusProxy{{Upstream: "docker.io", Repository: "docker-hub", RemoteURL: hub.URL}}
	})
	if b, err := os.ReadFile(filepath.Join(certsDir, "docker.io", "hosts.toml")); err != nil || !strings.Contains(string(b), "/v2/docker-hub") {
		t.Fatalf("docker.io's hosts.toml (%v):\n%s\nwant the proxy's path, /v2/docker-hub", err, b)
	}
	if on, _ := priv.nexus.Anonymous(); !on {
		t.Error("anonymous access is off: nodes cannot pull through the proxy")
	}

	const image = "docker.io/library/hello:1.0"
	seen := len(priv.nexus.Requests())
	if _, err := ctrd.pull(image, "", ""); err != nil {
		t.Fatalf("CRI PullImage %s without credentials: %v", image, err)
	}
	if got := ctrd.run(t, image, "e2e-hello-hub"); got != helloLine {
		t.Fatalf("the container printed %q, want %q", got, helloLine)
	}
	if reqs := priv.nexus.Requests()[seen:]; !slices.ContainsFunc(reqs, func(r string) bool { return strings.Contains(r, " /v2/docker-hub/library/hello/manifests/1.0") }) {
		t.Errorf("Nexus's proxy saw no manifest request during the pull:\n%s", strings.Join(reqs, "\n"))
	}
	t.Logf("containerd pulled %s through the Nexus proxy without credentials", image)
	if _, err := ctrd.pull(hosted, "", ""); err == nil {
		t.Errorf("a pull of the hosted %s without credentials succeeded: anonymous users read more than the proxy", hosted)
	} else {
		t.Logf("a pull of the hosted %s without credentials is refused: %v", hosted, err)
	}

	hub.Stop()
	fresh := startContainerd(t, l, filepath.Join(work, "containerd-fresh"), certsDir)
	if _, err := fresh.pull(image, "", ""); err != nil {
		t.Fatalf("CRI PullImage %s on a fresh containerd once Docker Hub's stand-in is gone: %v", image, err)
	}
	t.Logf("with Docker Hub's stand-in gone, a fresh containerd pulled %s from the proxy's store", image)
	_ = syscall.Kill(-fresh.cmd.Process.Pid, syscall.SIGTERM)

	setProxy(t, k8s, mirror, func(p *v1alpha1.NexusProvision, rm *v1alpha1.RegistryMirror) {
		rm.Spec.MirrorOf, p.Proxies = nil, nil
	})
	ctrd.remove(t, image)
}

// setProxy changes the mirror's spec and provisioning, and waits until it is Ready again.
func setProxy(t *testing.T, k8s client.Client, name string, change func(*v1alpha1.NexusProvision, *v1alpha1.RegistryMirror)) {
	t.Helper()
	rm := &v1alpha1.RegistryMirror{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, rm); err != nil {
		t.Fatal(err)
	}
	change(rm.Spec.Provision.Nexus, rm)
	if err := k8s.Update(context.Background(), rm); err != nil {
		t.Fatal(err)
	}
	mirrorReady(t, k8s, name)
}
