package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster"
)

// Docker runs the docker CLI. Run returns the command's standard output, trimmed.
type Docker interface {
	Run(ctx context.Context, stdin io.Reader, args ...string) (string, error)
}

// DockerCLI is Docker on the docker binary.
type DockerCLI struct{}

// Run runs docker with args; a failure carries docker's standard error.
func (DockerCLI) Run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Kind creates, lists and deletes kind clusters.
type Kind interface {
	Create(name, configPath, kubeconfigPath string) error
	Delete(name, kubeconfigPath string) error
	Clusters() ([]string, error)
	// Nodes returns the node container names of a cluster.
	Nodes(name string) ([]string, error)
}

// KindLibrary is Kind on sigs.k8s.io/kind/pkg/cluster with the docker provider.
type KindLibrary struct{ p *cluster.Provider }

// NewKindLibrary returns kind's own library, talking to Docker.
func NewKindLibrary() *KindLibrary {
	return &KindLibrary{p: cluster.NewProvider(cluster.ProviderWithDocker())}
}

// Create creates a cluster from a config file and writes its kubeconfig.
func (k *KindLibrary) Create(name, configPath, kubeconfigPath string) error {
	return k.p.Create(name, cluster.CreateWithConfigFile(configPath), cluster.CreateWithKubeconfigPath(kubeconfigPath), cluster.CreateWithDisplayUsage(false), cluster.CreateWithDisplaySalutation(false))
}

// Delete deletes a cluster and its kubeconfig entry.
func (k *KindLibrary) Delete(name, kubeconfigPath string) error {
	return k.p.Delete(name, kubeconfigPath)
}

// Clusters lists kind clusters.
func (k *KindLibrary) Clusters() ([]string, error) { return k.p.List() }

// Nodes lists a cluster's node containers.
func (k *KindLibrary) Nodes(name string) ([]string, error) {
	ns, err := k.p.ListNodes(name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.String())
	}
	return out, nil
}
