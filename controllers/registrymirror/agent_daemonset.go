package registrymirror

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// AgentOptions configure the node agent DaemonSet.
type AgentOptions struct {
	// Image of regwire for the agent container.
	Image string
	// ServiceAccount the agent runs as.
	ServiceAccount string
	// ContainerdCertsDir is containerd's config_path on the nodes.
	ContainerdCertsDir string
	// HostsFile is the nodes' hosts file.
	HostsFile string
	// Env is added to the agent container, e.g. KUBERNETES_SERVICE_HOST and
	// KUBERNETES_SERVICE_PORT where pods reach the API server other than through the
	// kubernetes Service (clusters without kube-proxy).
	Env []corev1.EnvVar
}

// DefaultAgentOptions are the defaults of the manager's --agent-* flags.
func DefaultAgentOptions(image string) AgentOptions {
	return AgentOptions{
		Image:              image,
		ServiceAccount:     "regwire-agent",
		ContainerdCertsDir: "/etc/containerd/certs.d",
		HostsFile:          "/etc/hosts",
	}
}

// AgentDaemonSetName is the name of the node agent DaemonSet.
const AgentDaemonSetName = "regwire-agent"

// Paths inside the agent container where the host paths are mounted.
const (
	agentCertsMount = "/host/containerd-certs.d"
	agentHostsMount = "/host/hosts"
)

// AgentDaemonSet is the node agent DaemonSet. The agent runs as root to write root-owned
// host files, but without any capability and with a read-only root file system: the two
// hostPath mounts are all it can change. hostNetwork makes its registry probes see what
// containerd sees (the node's DNS and /etc/hosts).
func AgentDaemonSet(namespace string, o AgentOptions) *appsv1.DaemonSet {
	labels := map[string]string{
		"app.kubernetes.io/name":       "regwire",
		"app.kubernetes.io/component":  "agent",
		"app.kubernetes.io/managed-by": "regwire",
	}
	selector := map[string]string{"app.kubernetes.io/name": "regwire", "app.kubernetes.io/component": "agent"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: AgentDaemonSetName, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            o.ServiceAccount,
					HostNetwork:                   true,
					DNSPolicy:                     corev1.DNSClusterFirstWithHostNet,
					PriorityClassName:             "system-node-critical",
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					// Every node that may pull images needs the wiring; each mirror's own
					// nodeSelector and tolerations decide what a node applies.
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name:  "agent",
						Image: o.Image,
						Args: []string{
							"agent",
							"--node-name=$(NODE_NAME)",
							"--namespace=$(POD_NAMESPACE)",
							"--root=" + agentCertsMount,
							"--hosts-file=" + agentHostsMount,
						},
						Env: append([]corev1.EnvVar{
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							// The Go runtime collects harder as the heap nears the memory limit.
							{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
						}, o.Env...),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                ptr.To[int64](0),
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "containerd-certs", MountPath: agentCertsMount},
							{Name: "hosts", MountPath: agentHostsMount},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "containerd-certs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
							Path: o.ContainerdCertsDir, Type: ptr.To(corev1.HostPathDirectoryOrCreate),
						}}},
						{Name: "hosts", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
							Path: o.HostsFile, Type: ptr.To(corev1.HostPathFile),
						}}},
					},
				},
			},
		},
	}
}
