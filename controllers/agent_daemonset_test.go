package controllers_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/regwire/regwire/controllers"
)

func TestAgentEnvReachesTheAgentContainerAfterItsOwn(t *testing.T) {
	t.Parallel()
	o := controllers.DefaultAgentOptions("regwire:dev")
	o.Env = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}}
	ds := controllers.AgentDaemonSet("regwire-system", o)
	env := ds.Spec.Template.Spec.Containers[0].Env
	if len(env) != 4 || env[0].Name != "NODE_NAME" || env[2].Name != "KUBERNETES_SERVICE_HOST" || env[3].Value != "6443" {
		t.Errorf("agent env %+v", env)
	}
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Error("the agent must share the node's network to see what containerd sees")
	}
}
