package nodeconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/regwire/regwire/api/v1alpha1"
)

// The manager↔agent protocol: the manager publishes each RegistryMirror that passed its
// checks as one ConfigMap in the operator namespace, holding Published as JSON; agents
// watch these and nothing else, so they need no access to Secrets or RegistryMirrors.
const (
	// PublishedLabel marks the ConfigMaps agents read (value "true").
	PublishedLabel = "regwire.dev/published-mirror"
	// PublishedMirrorAnnotation names the RegistryMirror a ConfigMap publishes.
	PublishedMirrorAnnotation = "regwire.dev/registry-mirror"
	// PublishedKey is the ConfigMap key holding the JSON.
	PublishedKey = "mirror.json"
)

// PublishedName is the ConfigMap that publishes the RegistryMirror named mirror.
func PublishedName(mirror string) string {
	name := "regwire-mirror-" + mirror
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(mirror))
	return name[:253-11] + "-" + hex.EncodeToString(sum[:5])
}

// SetConfigMap makes cm publish p: label, annotation and data (other labels and
// annotations stay).
func SetConfigMap(cm *corev1.ConfigMap, p Published) {
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[PublishedLabel] = "true"
	cm.Labels["app.kubernetes.io/managed-by"] = "regwire"
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[PublishedMirrorAnnotation] = p.Name
	cm.Data = map[string]string{PublishedKey: p.Encode()}
}

// FromConfigMap reads what cm publishes. On error, mirror still names the RegistryMirror
// (from the annotation, else the ConfigMap's name) so that a node can report on it.
func FromConfigMap(cm *corev1.ConfigMap) (p Published, mirror string, err error) {
	mirror = cm.Annotations[PublishedMirrorAnnotation]
	if mirror == "" {
		mirror = cm.Name
	}
	p, err = Decode(cm.Data[PublishedKey])
	return p, mirror, err
}

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
	// ClientCertificate is the digest (ClientCertificateDigest) of the mirror's client
	// certificate and key, which agents read from the ClientCertificatesSecret; empty
	// when the registry needs none. The key itself is never published here.
	ClientCertificate string `json:"clientCertificate,omitempty"`
}

// ClientCertificatesSecret is the one Secret, in the operator namespace, holding every
// mirror's client certificate and key for the node agents: <mirror>.crt and <mirror>.key.
// The agents' Role may read this Secret only (RBAC resourceNames).
const ClientCertificatesSecret = "regwire-node-client-certificates"

// ClientCertificateKeys are the keys of mirror's certificate and key in
// ClientCertificatesSecret.
func ClientCertificateKeys(mirror string) (cert, key string) { return mirror + ".crt", mirror + ".key" }

// ClientCertificateDigest identifies one certificate and key without revealing either.
func ClientCertificateDigest(cert, key []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00", len(cert))
	h.Write(cert)
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Publish extracts what nodes need from rm, with ca resolved from caBundle or caFrom and
// clientCert the ClientCertificateDigest of its client certificate ("" for none).
func Publish(rm *v1alpha1.RegistryMirror, ca []byte, clientCert string) Published {
	s := rm.Spec
	return Published{
		Name:       rm.Name,
		Generation: rm.Generation,
		Created:    rm.CreationTimestamp.UTC(),
		Spec: v1alpha1.RegistryMirrorSpec{
			Host:               s.Host,
			Endpoint:           s.Endpoint,
			FallbackEndpoints:  s.FallbackEndpoints,
			InsecureSkipVerify: s.InsecureSkipVerify,
			MirrorOf:           s.MirrorOf,
			SkipFallback:       s.SkipFallback,
			Runtimes:           s.Runtimes,
			Capabilities:       s.Capabilities,
			HostAliases:        s.HostAliases,
			NodeSelector:       s.NodeSelector,
			Tolerations:        s.Tolerations,
		},
		CA:                string(ca),
		ClientCertificate: clientCert,
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
