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
	c := v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     o.Name,
		Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole, Image: o.NodeImage}},
		ContainerdConfigPatches: []string{
			fmt.Sprintf("[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = %q\n", NodeCertsDir),
		},
	}
	for range o.Workers {
		c.Nodes = append(c.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: o.NodeImage})
	}
	return yaml.Marshal(c)
}
