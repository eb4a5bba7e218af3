// Package controlplane starts a local Kubernetes control plane (kube-apiserver + etcd, built
// from source by hack/envtest.sh) with regwire's CRDs installed. The envtest suites and the
// embedded demo stack (`regwire bootstrap local`) both use it.
package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/regwire/regwire/config/crd"
)

// ErrNoAssets says the control-plane binaries are missing, and how to build them.
var ErrNoAssets = errors.New("kube-apiserver and etcd not found: run `make envtest` (hack/envtest.sh builds them from the Go module proxy into bin/k8s/) or set KUBEBUILDER_ASSETS")

// AssetsDir returns the directory holding kube-apiserver and etcd: KUBEBUILDER_ASSETS when
// set, else bin/k8s/<os>-<arch> in the nearest parent directory of the working
// directory that has one (so tests run from an IDE find it too).
func AssetsDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		if !hasAssets(d) {
			return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s: %w", d, ErrNoAssets)
		}
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	rel := filepath.Join("bin", "k8s", runtime.GOOS+"-"+runtime.GOARCH)
	for {
		if d := filepath.Join(dir, rel); hasAssets(d) {
			return d, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoAssets
		}
		dir = parent
	}
}

func hasAssets(dir string) bool {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// ControlPlane is a running kube-apiserver + etcd with regwire's CRDs.
type ControlPlane struct {
	env *envtest.Environment
	// Config is an admin client configuration.
	Config *rest.Config
}

// Options tune Start.
type Options struct {
	// AttachOutput copies the control plane's output to this process's stdout/stderr.
	AttachOutput bool
	// ServiceAccountAdmission turns on the ServiceAccount admission plugin that envtest
	// turns off, so that pods run by a real kubelet get their service account token.
	ServiceAccountAdmission bool
	// NoCRDs leaves regwire's CRDs out, for tests that install them as users do.
	NoCRDs bool
}

// Start starts the control plane and installs regwire's CRDs (unless NoCRDs).
func Start(opts Options) (*ControlPlane, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	crds, err := crd.All()
	if err != nil {
		return nil, err
	}
	if opts.NoCRDs {
		crds = nil
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    dir,
		CRDs:                     crds,
		AttachControlPlaneOutput: opts.AttachOutput,
	}
	if opts.ServiceAccountAdmission {
		env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", dir, err)
	}
	return &ControlPlane{env: env, Config: cfg}, nil
}

// Stop stops the API server and etcd and removes their data.
func (c *ControlPlane) Stop() error { return c.env.Stop() }

// UserConfig returns a client configuration that authenticates as user name, in groups,
// with no more rights than RBAC gives them.
func (c *ControlPlane) UserConfig(name string, groups ...string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, c.Config)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// Kubeconfig returns a kubeconfig for an administrator (group system:masters).
func (c *ControlPlane) Kubeconfig() ([]byte, error) {
	u, err := c.env.AddUser(envtest.User{Name: "regwire-admin", Groups: []string{"system:masters"}}, c.Config)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}
