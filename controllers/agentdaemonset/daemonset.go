package agentdaemonset

import (
	"path"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodefiles"
)

// Options configure the node agent DaemonSet.
type Options struct {
	// Image of regwire for the agent container.
	Image string
	// ServiceAccount the agent runs as.
	ServiceAccount string
	// Runtimes are the container runtimes whose configuration the agent can write; each
	// adds only the mounts it needs.
	Runtimes []v1alpha1.ContainerRuntime
	// ContainerdCertsDir is containerd's config_path on the nodes.
	ContainerdCertsDir string
	// ContainerdConfig is containerd's configuration file on the nodes, which the agent
	// reads (its directory mounted read-only) to report ConfigPathNotSet; "" skips it.
	ContainerdConfig string
	// CRIODir is /etc/containers on the nodes (registries.conf.d, certs.d).
	CRIODir string
	// DockerCertsDir is Docker Engine's certs.d on the nodes.
	DockerCertsDir string
	// HostsFile is the nodes' hosts file.
	HostsFile string
	// Env is added to the agent container, e.g. KUBERNETES_SERVICE_HOST and
	// KUBERNETES_SERVICE_PORT where pods reach the API server other than through the
	// kubernetes Service (clusters without kube-proxy).
	Env []corev1.EnvVar
	// NodeSelector limits the nodes the agent runs on (none: every node the tolerations
	// allow). A mirror's own nodeSelector decides what a node applies.
	NodeSelector map[string]string
	// Tolerations of the agent pods; the default tolerates every taint, as every node that
	// may pull images needs the wiring.
	Tolerations []corev1.Toleration
	// PriorityClassName of the agent pods.
	PriorityClassName string
	// Resources of the agent container.
	Resources corev1.ResourceRequirements
}

// DefaultOptions are the defaults of the manager's --agent-* flags.
func DefaultOptions(image string) Options {
	return Options{
		Image:             image,
		Tolerations:       []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		PriorityClassName: "system-node-critical",
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		ServiceAccount:     "regwire-agent",
		Runtimes:           []v1alpha1.ContainerRuntime{v1alpha1.RuntimeContainerd},
		ContainerdCertsDir: "/etc/containerd/certs.d",
		ContainerdConfig:   "/etc/containerd/config.toml",
		CRIODir:            "/etc/containers",
		DockerCertsDir:     "/etc/docker/certs.d",
		HostsFile:          "/etc/hosts",
	}
}

// Name is the name of the node agent DaemonSet.
const Name = "regwire-agent"

// Paths inside the agent container where the host paths are mounted.
const (
	agentCertsMount            = "/host/containerd-certs.d"
	agentContainerdConfigMount = "/host/containerd-config"
	agentCRIOMount             = "/host/containers"
	agentDockerMount           = "/host/docker-certs.d"
	agentHostsMount            = "/host/hosts"
)

// agentMounts returns the agent's arguments, mounts and volumes for the runtimes in o:
// each runtime adds only its own directories.
func agentMounts(o Options) ([]string, []corev1.VolumeMount, []corev1.Volume) {
	hostPath := func(name, path string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: ptr.To(t)}}}
	}
	args := []string{"--hosts-file=" + agentHostsMount}
	if !slices.Contains(o.Runtimes, v1alpha1.RuntimeContainerd) {
		args = append(args, "--root=") // the agent's default is containerd's
	}
	mounts := []corev1.VolumeMount{{Name: "hosts", MountPath: agentHostsMount}}
	volumes := []corev1.Volume{hostPath("hosts", o.HostsFile, corev1.HostPathFile)}
	for _, rt := range o.Runtimes {
		switch rt {
		case v1alpha1.RuntimeContainerd:
			args = append(args, "--root="+agentCertsMount, "--root-on-host="+o.ContainerdCertsDir)
			mounts = append(mounts, corev1.VolumeMount{Name: "containerd-certs", MountPath: agentCertsMount})
			volumes = append(volumes, hostPath("containerd-certs", o.ContainerdCertsDir, corev1.HostPathDirectoryOrCreate))
			if o.ContainerdConfig != "" {
				dir, file := path.Split(o.ContainerdConfig)
				args = append(args, "--containerd-config="+path.Join(agentContainerdConfigMount, file), "--containerd-config-on-host="+o.ContainerdConfig)
				mounts = append(mounts, corev1.VolumeMount{Name: "containerd-config", MountPath: agentContainerdConfigMount, ReadOnly: true})
				volumes = append(volumes, hostPath("containerd-config", path.Clean(dir), corev1.HostPathDirectoryOrCreate))
			}
		case v1alpha1.RuntimeCRIO:
			args = append(args, "--crio-root="+agentCRIOMount, "--proc-root=/proc")
			// Only what regwire writes under /etc/containers: its drop-ins, CA and client
			// files, and its ownership record; never policy.json, registries.conf or
			// storage.conf.
			for _, d := range crioDirs {
				name := "containers-" + strings.TrimPrefix(strings.TrimSuffix(d, ".d"), ".")
				mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: path.Join(agentCRIOMount, d)})
				volumes = append(volumes, hostPath(name, path.Join(o.CRIODir, d), corev1.HostPathDirectoryOrCreate))
			}
		case v1alpha1.RuntimeDocker:
			args = append(args, "--docker-root="+agentDockerMount)
			mounts = append(mounts, corev1.VolumeMount{Name: "docker-certs", MountPath: agentDockerMount})
			volumes = append(volumes, hostPath("docker-certs", o.DockerCertsDir, corev1.HostPathDirectoryOrCreate))
		}
	}
	return args, mounts, volumes
}

// New is the node agent DaemonSet. The agent runs as root to write root-owned
// host files, but without any capability and with a read-only root file system: the
// hosts file and the registry directories of the runtimes in o are all it can change
// (containerd's configuration file is mounted read-only). hostNetwork makes its registry probes see what
// containerd sees (the node's DNS and /etc/hosts).
func New(namespace string, o Options) *appsv1.DaemonSet {
	mountArgs, mounts, volumes := agentMounts(o)
	labels := map[string]string{
		"app.kubernetes.io/name":       "regwire",
		"app.kubernetes.io/component":  "agent",
		"app.kubernetes.io/managed-by": "regwire",
	}
	selector := map[string]string{"app.kubernetes.io/name": "regwire", "app.kubernetes.io/component": "agent"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: Name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: o.ServiceAccount,
					HostNetwork:        true,
					// CRI-O reloads its registries on SIGHUP: the agent must see its process.
					HostPID:                       slices.Contains(o.Runtimes, v1alpha1.RuntimeCRIO),
					DNSPolicy:                     corev1.DNSClusterFirstWithHostNet,
					PriorityClassName:             o.PriorityClassName,
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					// Every node that may pull images needs the wiring (by default the agent
					// tolerates every taint); each mirror's own nodeSelector and tolerations
					// decide what a node applies.
					NodeSelector: o.NodeSelector,
					Tolerations:  o.Tolerations,
					Containers: []corev1.Container{{
						Name:  "agent",
						Image: o.Image,
						Args: append([]string{
							"agent",
							"--node-name=$(NODE_NAME)",
							"--namespace=$(POD_NAMESPACE)",
						}, mountArgs...),
						Env: append([]corev1.EnvVar{
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							// The Go runtime collects harder as the heap nears the memory limit.
							{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
						}, o.Env...),
						Resources: o.Resources,
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                ptr.To[int64](0),
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: mounts,
					}},
					Volumes: volumes,
				},
			},
		},
	}
}

// crioDirs are the directories under /etc/containers the agent writes: CRI-O's drop-ins
// (containers-registries.conf.d(5)), its per-registry trust (containers-certs.d(5)) and
// regwire's ownership record (nodefiles.StateDir).
var crioDirs = []string{"registries.conf.d", "certs.d", nodefiles.StateDir}
