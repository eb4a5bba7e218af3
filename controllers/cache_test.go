package controllers

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// realNode is a Node as kubelet keeps it: annotations, managedFields, capacity,
// conditions, ~50 images.
func realNode() *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-17", UID: "u-17", ResourceVersion: "991",
			Labels:        map[string]string{"kubernetes.io/hostname": "worker-17", "pool": "gpu", "topology.kubernetes.io/zone": "eu-1a"},
			Annotations:   map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:conditions":{},"f:images":{},"f:nodeInfo":{}}}`)}},
		},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.17.0/24", Taints: []corev1.Taint{{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Capacity:  corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi")},
			NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://2.1.4"},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.17"}},
		},
	}
	for _, c := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: c, Status: corev1.ConditionFalse,
			LastHeartbeatTime: metav1.NewTime(time.Now()), Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"})
	}
	for i := range 50 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{SizeBytes: 1 << 20,
			Names: []string{fmt.Sprintf("registry.example/team/image-%d@sha256:%064d", i, i), fmt.Sprintf("registry.example/team/image-%d:v1.2.%d", i, i)}})
	}
	return n
}

// TestTheCacheKeepsOfANodeOnlyWhatSelectionReads: the manager's cached Node is a small
// fraction of the real one, and every mirror selects it exactly as it selects the real one.
func TestTheCacheKeepsOfANodeOnlyWhatSelectionReads(t *testing.T) {
	t.Parallel()
	full := realNode()
	out, err := nodeForSelection(full)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := out.(*corev1.Node)
	a, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(trimmed)
	t.Logf("a real Node: %d bytes; cached: %d bytes", len(a), len(b))
	if len(b)*10 > len(a) {
		t.Errorf("the cached Node is %d of %d bytes: more than a tenth", len(b), len(a))
	}
	if len(trimmed.ManagedFields) != 0 || len(trimmed.Status.Images) != 0 || len(trimmed.Annotations) != 0 {
		t.Errorf("the cached Node keeps what no controller reads: %+v", trimmed)
	}
	for _, spec := range []v1alpha1.RegistryMirrorSpec{
		{},
		{NodeSelector: map[string]string{"pool": "gpu"}},
		{NodeSelector: map[string]string{"pool": "cpu"}},
		{Tolerations: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}},
		{NodeSelector: map[string]string{"pool": "gpu"}, Tolerations: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpEqual, Value: "true"}}},
	} {
		if nodeconfig.Selects(spec, full) != nodeconfig.Selects(spec, trimmed) {
			t.Errorf("selection by %+v differs between the real and the cached Node", spec)
		}
	}
	// Anything that is not a Node (a tombstone) passes as it is.
	if out, _ := nodeForSelection("tombstone"); out != "tombstone" {
		t.Errorf("transform of a non-Node: %v", out)
	}
}
