package agentdaemonset_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/controllers/agentdaemonset"
)

func TestAgentEnvReachesTheAgentContainerAfterItsOwn(t *testing.T) {
	t.Parallel()
	o := agentdaemonset.DefaultOptions("regwire:dev")
	o.Env = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}
	ds := agentdaemonset.New("regwire-system", o)
	env := ds.Spec.Template.Spec.Containers[0].Env
	if len(env) != 5 || env[0].Name != "NODE_NAME" || env[2].Name != "GOMEMLIMIT" || env[3].Name != "KUBERNETES_SERVICE_HOST" || env[4].Value != "6443" {
		t.Errorf("agent env %+v", env)
	}
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Error("the agent must share the node's network to see what containerd sees")
	}
}

func TestTheAgentMountsOnlyWhatItsRuntimesNeed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		runtimes []v1alpha1.ContainerRuntime
		// writable and readOnly are the host paths mounted so.
		writable, readOnly []string
		hostPID            bool
		args               []string
	}{
		{"containerd alone: its certs.d and the hosts file; its configuration read-only", []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd},
			[]string{"/etc/hosts", "/etc/containerd/certs.d"}, []string{"/etc/containerd"}, false,
			[]string{"--root=/host/containerd-certs.d", "--containerd-config=/host/containerd-config/config.toml"}},
		{"CRI-O alone: only what regwire writes under /etc/containers (never policy.json), and the node's processes for SIGHUP", []v1alpha1.ContainerRuntime{v1alpha1.RuntimeCRIO},
			[]string{"/etc/hosts", "/etc/containers/registries.conf.d", "/etc/containers/certs.d", "/etc/containers/.regwire"}, nil, true,
			[]string{"--root=", "--crio-root=/host/containers", "--proc-root=/proc"}},
		{"Docker alone: its certs.d", []v1alpha1.ContainerRuntime{v1alpha1.RuntimeDocker},
			[]string{"/etc/hosts", "/etc/docker/certs.d"}, nil, false,
			[]string{"--root=", "--docker-root=/host/docker-certs.d"}},
		{"all three", []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd, v1alpha1.RuntimeCRIO, v1alpha1.RuntimeDocker},
			[]string{"/etc/hosts", "/etc/containerd/certs.d", "/etc/containers/registries.conf.d", "/etc/containers/certs.d", "/etc/containers/.regwire", "/etc/docker/certs.d"}, []string{"/etc/containerd"}, true,
			[]string{"--crio-root=/host/containers", "--docker-root=/host/docker-certs.d"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := agentdaemonset.DefaultOptions("regwire:dev")
			o.Runtimes = tc.runtimes
			spec := agentdaemonset.New("regwire-system", o).Spec.Template.Spec
			c := spec.Containers[0]
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("the agent's root file system must be read-only: %+v", c.SecurityContext)
			}
			readOnly := map[string]bool{}
			for _, m := range c.VolumeMounts {
				readOnly[m.Name] = m.ReadOnly
			}
			var writable, ro []string
			for _, v := range spec.Volumes {
				if v.HostPath == nil {
					t.Errorf("volume %s is not a hostPath: the agent needs no writable volume of its own", v.Name)
					continue
				}
				if readOnly[v.Name] {
					ro = append(ro, v.HostPath.Path)
				} else {
					writable = append(writable, v.HostPath.Path)
				}
			}
			if !slices.Equal(writable, tc.writable) || !slices.Equal(ro, tc.readOnly) {
				t.Errorf("writable host paths %v and read-only %v, want %v and %v", writable, ro, tc.writable, tc.readOnly)
			}
			if spec.HostPID != tc.hostPID {
				t.Errorf("hostPID = %v, want %v", spec.HostPID, tc.hostPID)
			}
			for _, a := range tc.args {
				if !slices.Contains(c.Args, a) {
					t.Errorf("args %v lack %s", c.Args, a)
				}
			}
		})
	}
}

// TestTheAgentIsScheduledAsItsOptionsSay: by default every taint is tolerated at
// system-node-critical; the manager's --agent-* scheduling options replace that.
func TestTheAgentIsScheduledAsItsOptionsSay(t *testing.T) {
	t.Parallel()
	def := agentdaemonset.New("regwire-system", agentdaemonset.DefaultOptions("regwire:dev")).Spec.Template.Spec
	if def.PriorityClassName != "system-node-critical" || len(def.Tolerations) != 1 || def.Tolerations[0].Operator != corev1.TolerationOpExists ||
		def.NodeSelector != nil || def.Containers[0].Resources.Limits.Memory().String() != "128Mi" {
		t.Errorf("default agent scheduling: priority %q, tolerations %v, nodeSelector %v, resources %v",
			def.PriorityClassName, def.Tolerations, def.NodeSelector, def.Containers[0].Resources)
	}
	o := agentdaemonset.DefaultOptions("regwire:dev")
	o.PriorityClassName, o.NodeSelector = "high", map[string]string{"kubernetes.io/os": "linux"}
	o.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}
	o.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}
	spec := agentdaemonset.New("regwire-system", o).Spec.Template.Spec
	if spec.PriorityClassName != "high" || spec.NodeSelector["kubernetes.io/os"] != "linux" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "gpu" ||
		spec.Containers[0].Resources.Limits.Memory().String() != "256Mi" || spec.Containers[0].Resources.Requests != nil {
		t.Errorf("agent scheduling: priority %q, tolerations %v, nodeSelector %v, resources %v", spec.PriorityClassName, spec.Tolerations, spec.NodeSelector, spec.Containers[0].Resources)
	}
}
