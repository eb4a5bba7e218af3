package registrymirror_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/regwire/regwire/controllers/registrymirror"
)

func TestAgentEnvReachesTheAgentContainerAfterItsOwn(t *testing.T) {
	t.Parallel()
	o := registrymirror.DefaultAgentOptions("regwire:dev")
	o.Env = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}
	ds := registrymirror.AgentDaemonSet("regwire-system", o)
	env := ds.Spec.Template.Spec.Containers[0].Env
	if len(env) != 5 || env[0].Name != "NODE_NAME" || env[2].Name != "GOMEMLIMIT" || env[3].Name != "KUBERNETES_SERVICE_HOST" || env[4].Value != "6443" {
		t.Errorf("agent env %+v", env)
	}
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Error("the agent must share the node's network to see what containerd sees")
	}
}

func TestTheAgentCanWriteOnlyItsTwoHostPaths(t *testing.T) {
	t.Parallel()
	o := registrymirror.DefaultAgentOptions("regwire:dev")
	spec := registrymirror.AgentDaemonSet("regwire-system", o).Spec.Template.Spec
	c := spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("the agent's root file system must be read-only: %+v", c.SecurityContext)
	}
	var got []string
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath: the agent needs no writable volume of its own", v.Name)
			continue
		}
		got = append(got, v.HostPath.Path)
	}
	if want := []string{o.ContainerdCertsDir, o.HostsFile}; !slices.Equal(got, want) {
		t.Errorf("host paths %v, want exactly %v", got, want)
	}
}
