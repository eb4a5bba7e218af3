package nodeconfig

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/regwire/regwire/api/v1alpha1"
)

// Published is what the controller publishes to nodes about one RegistryMirror that passed
// its checks: only what a node needs, with the CA resolved (nodes never read Secrets).
type Published struct {
	// Name of the RegistryMirror.
	Name string `json:"name"`
	// Generation of the RegistryMirror this describes; nodes report it back when applied.
	Generation int64 `json:"generation"`
	// Created is the RegistryMirror's creation time, which decides host conflicts.
	Created time.Time `json:"created"`
	// Spec holds the node-relevant fields of the RegistryMirror's spec.
	Spec v1alpha1.RegistryMirrorSpec `json:"spec"`
	// CA is the resolved PEM CA bundle; empty means system roots.
	CA string `json:"ca,omitempty"`
}

// Publish extracts what nodes need from rm, with ca resolved from caBundle or caFrom.
func Publish(rm *v1alpha1.RegistryMirror, ca []byte) Published {
	s := rm.Spec
	return Published{
		Name:       rm.Name,
		Generation: rm.Generation,
		Created:    rm.CreationTimestamp.UTC(),
		Spec: v1alpha1.RegistryMirrorSpec{
			Host:               s.Host,
			Endpoint:           s.Endpoint,
			InsecureSkipVerify: s.InsecureSkipVerify,
			MirrorOf:           s.MirrorOf,
			Capabilities:       s.Capabilities,
			HostAliases:        s.HostAliases,
			NodeSelector:       s.NodeSelector,
			Tolerations:        s.Tolerations,
		},
		CA: string(ca),
	}
}

// Encode serialises p for a ConfigMap value.
func (p Published) Encode() string {
	b, err := json.Marshal(p)
	if err != nil { // plain data types always marshal
		panic(err)
	}
	return string(b)
}

// Decode reads a Published back.
func Decode(data string) (Published, error) {
	var p Published
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return Published{}, fmt.Errorf("decoding published RegistryMirror: %w", err)
	}
	if p.Name == "" {
		return Published{}, fmt.Errorf("decoding published RegistryMirror: no name")
	}
	return p, nil
}

// Mirror turns a Published into renderer input.
func (p Published) Mirror() Mirror {
	return Mirror{Name: p.Name, Created: p.Created, Spec: p.Spec, CA: []byte(p.CA)}
}

// conditionTaints are the taints Kubernetes puts on nodes for their conditions and that
// DaemonSet pods, and so the regwire agent, tolerate automatically. A node that is not
// ready yet (every new node starts with node.kubernetes.io/not-ready) needs its registry
// wiring most.
var conditionTaints = map[string]bool{
	corev1.TaintNodeNotReady:           true,
	corev1.TaintNodeUnreachable:        true,
	corev1.TaintNodeDiskPressure:       true,
	corev1.TaintNodeMemoryPressure:     true,
	corev1.TaintNodePIDPressure:        true,
	corev1.TaintNodeUnschedulable:      true,
	corev1.TaintNodeNetworkUnavailable: true,
}

// Selects reports whether the mirror applies to node: its nodeSelector matches the node's
// labels and its tolerations tolerate the node's NoSchedule and NoExecute taints, the
// rule the scheduler applies to DaemonSet pods (which tolerate the condition taints).
func Selects(spec v1alpha1.RegistryMirrorSpec, node *corev1.Node) bool {
	if !labels.SelectorFromSet(spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false
	}
	for i := range node.Spec.Taints {
		taint := &node.Spec.Taints[i]
		if taint.Effect == corev1.TaintEffectPreferNoSchedule || conditionTaints[taint.Key] {
			continue
		}
		tolerated := false
		for j := range spec.Tolerations {
			if spec.Tolerations[j].ToleratesTaint(klog.Background(), taint, true) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			return false
		}
	}
	return true
}
