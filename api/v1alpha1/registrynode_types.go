package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RegistryNodeStatus is what the regwire agent on one node applied and saw.
type RegistryNodeStatus struct {
	// conditions: Ready is True when every mirror selecting the node is applied and its
	// registry answered the probe.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// agentVersion is the regwire version of the agent.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`

	// runtime is the node's own container runtime, from its
	// status.nodeInfo.containerRuntimeVersion; empty when the agent does not know it.
	// +optional
	Runtime ContainerRuntime `json:"runtime,omitempty"`

	// configHash is a digest of every file and /etc/hosts line the agent applied.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`

	// mirrors reports each RegistryMirror that selects the node.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Mirrors []NodeMirrorStatus `json:"mirrors,omitempty"`
}

// NodeMirrorStatus is one RegistryMirror on one node.
type NodeMirrorStatus struct {
	// name of the RegistryMirror.
	// +required
	Name string `json:"name"`

	// observedGeneration is the RegistryMirror generation the node applied.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// appliedHash is a digest of the files and hosts lines the node applied for the mirror.
	// +optional
	AppliedHash string `json:"appliedHash,omitempty"`

	// runtimes are the container runtimes whose configuration the node holds for the
	// mirror.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	Runtimes []ContainerRuntime `json:"runtimes,omitempty"`

	// reason is a CamelCase cause when the mirror is not applied or not used:
	// ApplyFailed, HostConflict, RuntimeUnsupported or ConfigPathNotSet.
	// +optional
	Reason ConditionReason `json:"reason,omitempty"`

	// error says why the mirror is not applied on this node; empty when it is.
	// +optional
	Error string `json:"error,omitempty"`

	// notes say what of the mirror this node's runtime does not do, and what it does
	// instead, while the rest is applied: e.g. Docker Engine sends no pulls of mirrorOf
	// upstreams to a mirror, containerd before 2.1 takes no dialTimeout.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=1024
	Notes []string `json:"notes,omitempty"`

	// probe is the result of the last request from this node to the registry: to the
	// first endpoint that answered, or to the first endpoint when none did.
	// +optional
	Probe *ProbeResult `json:"probe,omitempty"`

	// endpoints are the probes of every endpoint, in priority order, when the mirror has
	// fallbackEndpoints.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=9
	Endpoints []EndpointProbe `json:"endpoints,omitempty"`
}

// EndpointProbe is the probe of one endpoint.
type EndpointProbe struct {
	// url of the endpoint.
	// +required
	URL string `json:"url"`

	// probe is the result of the last request to it.
	// +required
	Probe ProbeResult `json:"probe"`
}

// ProbeResult is the outcome of an HTTPS GET /v2/ from a node to a registry, with the
// mirror's CA: 200 or 401 means reachable.
type ProbeResult struct {
	// reachable is true when the registry answered 200 or 401.
	// +required
	Reachable bool `json:"reachable"`

	// statusCode is the HTTP status the registry answered with; 0 when none.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// error is why the probe failed (DNS, TCP, TLS, HTTP status).
	// +optional
	Error string `json:"error,omitempty"`

	// time of the probe.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
}

// RegistryNode reports what the regwire agent applied on one node, for the RegistryMirror
// controller to aggregate into each mirror's status.nodes. The agent creates it with the
// node's name and keeps it current; users only read it. It has no spec: what a node
// should apply comes from the RegistryMirrors that select it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=rn,categories=regwire
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.status.agentVersion`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RegistryNode struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the object's metadata; its name is the node's name.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// status is written by the node's agent.
	// +optional
	Status RegistryNodeStatus `json:"status,omitempty"`
}

// RegistryNodeList is a list of RegistryNodes.
//
// +kubebuilder:object:root=true
type RegistryNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RegistryNode `json:"items"`
}
