package bootstrap

import (
	"fmt"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

// KindOptions describe the kind cluster wired to the registry.
type KindOptions struct {
	// Name of the cluster (default regwire).
	Name string
	// Workers is the number of worker nodes besides the control plane.
	Workers int
	// NodeImage, when set, pins kindest/node.
	NodeImage string
	// Config, when set, is a kind cluster config (kind.x-k8s.io/v1alpha4) to start from:
	// its nodes, mounts and patches are kept (Workers is then ignored), and regwire adds
	// its containerd patch, the cluster name and NodeImage for nodes that name none.
	Config []byte
}

// NodeCertsDir is containerd's registry config_path on kind nodes: where the regwire
// agent writes hosts.toml and the CA.
const NodeCertsDir = "/etc/containerd/certs.d"

// KindConfigFile is the kind config's name in the state directory.
const KindConfigFile = "kind.yaml"

// RenderKind returns a kind cluster config built from kind's v1alpha4 types. Its one
// containerd patch pins config_path to NodeCertsDir (kind's default since v0.20, stated so
// that the directory the agent writes to and the one containerd reads cannot drift apart);
// no certificates are mounted by hand: the agent writes them.
func RenderKind(o KindOptions) ([]byte, error) {
	if o.Name == "" {
		o.Name = "regwire"
	}
	if o.Workers < 0 {
		return nil, fmt.Errorf("kind workers %d: must not be negative", o.Workers)
	}
	var c v1alpha4.Cluster
	if len(o.Config) > 0 {
		if err := yaml.UnmarshalStrict(o.Config, &c); err != nil {
			return nil, fmt.Errorf("kind config: %w", err)
		}
		if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" {
			return nil, fmt.Errorf("kind config: kind %q apiVersion %q, want Cluster kind.x-k8s.io/v1alpha4", c.Kind, c.APIVersion)
		}
	}
	c.TypeMeta = v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"}
	c.Name = o.Name
	if len(c.Nodes) == 0 {
		c.Nodes = []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole}}
		for range o.Workers {
			c.Nodes = append(c.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole})
		}
	}
	for i := range c.Nodes {
		if c.Nodes[i].Image == "" {
			c.Nodes[i].Image = o.NodeImage
		}
	}
	c.ContainerdConfigPatches = append(c.ContainerdConfigPatches,
		fmt.Sprintf("[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = %q\n", NodeCertsDir))
	return yaml.Marshal(c)
}
