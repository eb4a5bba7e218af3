package nodeconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
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
	// CABundleLabelValue is PublishedLabel's value on the ConfigMaps holding a CA bundle
	// that published mirrors refer to by digest (CABundleName): immutable, sent to every
	// agent once, not with every change of a mirror.
	CABundleLabelValue = "ca-bundle"
	// CABundleKey is the key of a CA bundle ConfigMap holding the PEM.
	CABundleKey = "ca.crt"
)

// PublishedSelector selects what agents read: published mirrors and CA bundles.
func PublishedSelector() labels.Selector {
	r, err := labels.NewRequirement(PublishedLabel, selection.In, []string{"true", CABundleLabelValue})
	if err != nil {
		panic(err) // constant, valid
	}
	return labels.NewSelector().Add(*r)
}

// CADigest identifies a CA bundle: "sha256:" and the hex digest of its PEM.
func CADigest(ca []byte) string {
	sum := sha256.Sum256(ca)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CABundleName is the ConfigMap holding the CA bundle of digest (CADigest).
func CABundleName(digest string) string {
	return "regwire-ca-" + strings.TrimPrefix(digest, "sha256:")
}

// CABundleConfigMap is the immutable ConfigMap holding ca, named by its digest.
func CABundleConfigMap(namespace string, ca []byte) *corev1.ConfigMap {
	immutable := true
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: CABundleName(CADigest(ca)),
			Labels: map[string]string{PublishedLabel: CABundleLabelValue, "app.kubernetes.io/managed-by": "regwire"}},
		Immutable: &immutable,
		Data:      map[string]string{CABundleKey: string(ca)},
	}
}

// CABundles returns the CA bundles of cms (the CA bundle ConfigMaps among them) by digest;
// one whose content does not match its name is left out.
func CABundles(cms []corev1.ConfigMap) map[string]string {
	out := map[string]string{}
	for i := range cms {
		cm := &cms[i]
		if cm.Labels[PublishedLabel] != CABundleLabelValue {
			continue
		}
		ca := cm.Data[CABundleKey]
		if d := CADigest([]byte(ca)); CABundleName(d) == cm.Name {
			out[d] = ca
		}
	}
	return out
}

// ResolveCA fills p.CA from the bundles (CABundles) when p refers to one by digest; it
// fails naming the ConfigMap when the bundle has not arrived.
func (p *Published) ResolveCA(bundles map[string]string) error {
	if p.CADigest == "" {
		return nil
	}
	ca, ok := bundles[p.CADigest]
	if !ok {
		return fmt.Errorf("waiting for the CA bundle in ConfigMap %s", CABundleName(p.CADigest))
	}
	p.CA = ca
	return nil
}

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
	// CA is the resolved PEM CA bundle; empty (and no CADigest) means system roots. The
	// manager publishes CADigest instead; agents fill CA from its bundle (ResolveCA).
	CA string `json:"ca,omitempty"`
	// CADigest refers to the CA bundle ConfigMap (CABundleName) holding the PEM.
	CADigest string `json:"caDigest,omitempty"`
	// ClientCertificate is the digest (ClientCertificateDigest) of the mirror's client
	// certificate and key, which agents read from ClientCertificatesSecretFor(Name); empty
	// when the registry needs none. The key itself is never published here.
	ClientCertificate string `json:"clientCertificate,omitempty"`
	// ReportWindowSeconds is the window over which the agents of the nodes the mirror
	// selects spread their reports after a change (ReportWindow); 0 leaves each agent its
	// own --report-spread.
	ReportWindowSeconds int32 `json:"reportWindowSeconds,omitempty"`
}

// The agents' reports after a change reach the API server at a bounded rate: each agent
// writes its report at a delay its node's name fixes within a window (the files are
// written at once). Agents spread over their own --report-spread (5 s by default), enough
// for some hundreds of nodes; for more, the manager publishes a window that grows with the
// nodes a mirror selects, in steps of ReportWindowStep, so that they report at no more
// than its --agent-report-rate. A step down waits until the nodes fit well within the
// smaller window, so that a fleet hovering at a step's edge does not republish the mirror
// to every node back and forth.
const (
	// ReportWindowStep is the step the published window grows and shrinks by.
	ReportWindowStep = 10 * time.Second
	// reportWindowFloor is what the agents' own spread covers: below it no window is
	// published.
	reportWindowFloor = 5 * time.Second
	// MaxReportWindow bounds the published window.
	MaxReportWindow = 10 * time.Minute
	// reportWindowShrink is the fraction of a smaller window the nodes' reports must fit
	// in before the window shrinks to it.
	reportWindowShrink = 0.8
)

// ReportWindow is the report window to publish for a mirror selecting nodes nodes, when
// the agents should report at no more than rate a second and the window published now
// is current (0 for none).
func ReportWindow(nodes int, rate float64, current time.Duration) time.Duration {
	if rate <= 0 || nodes <= 0 {
		return 0
	}
	need := time.Duration(float64(nodes) / rate * float64(time.Second))
	fits := func(w time.Duration) time.Duration { // what a window holds at rate
		if w == 0 {
			return reportWindowFloor
		}
		return w
	}
	smallest := time.Duration(0)
	if need > reportWindowFloor {
		smallest = min((need+ReportWindowStep-1)/ReportWindowStep*ReportWindowStep, MaxReportWindow)
	}
	current = min(max(current, 0)/ReportWindowStep*ReportWindowStep, MaxReportWindow)
	if smallest > current {
		return smallest // too many nodes for the window now: grow at once
	}
	if current > 0 {
		below := current - ReportWindowStep
		if float64(need) >= reportWindowShrink*float64(fits(below)) {
			return current // not clearly fewer nodes than the step below holds
		}
	}
	return smallest
}

// ReportWindow is the published window as a duration.
func (p Published) ReportWindow() time.Duration {
	return time.Duration(p.ReportWindowSeconds) * time.Second
}

// The mirrors' client certificates and keys reach the node agents in
// ClientCertificateShards Secrets of the operator namespace, ClientCertificatesSecret-<n>,
// each holding <mirror>.crt and <mirror>.key for the mirrors whose name falls into it
// (ClientCertificatesSecretFor): one Secret would fill its 1 MiB at some 150 mirrors. The
// agents' Role may get these Secrets only (RBAC resourceNames), and does so when a
// published mirror names a pair it does not hold: no agent watches Secrets.
const (
	ClientCertificatesSecret = "regwire-node-client-certificates"
	ClientCertificateShards  = 16
)

// ClientCertificatesSecretFor is the Secret holding mirror's client certificate and key.
func ClientCertificatesSecretFor(mirror string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(mirror))
	return fmt.Sprintf("%s-%d", ClientCertificatesSecret, h.Sum32()%ClientCertificateShards)
}

// ClientCertificatesSecrets are every Secret that may hold client certificates.
func ClientCertificatesSecrets() []string {
	out := make([]string, ClientCertificateShards)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", ClientCertificatesSecret, i)
	}
	return out
}

// ClientCertificateKeys are the keys of mirror's certificate and key in its
// ClientCertificatesSecretFor.
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
			DialTimeout:        s.DialTimeout,
			InsecureSkipVerify: s.InsecureSkipVerify,
			MirrorOf:           ProxiedMirrorOf(s),
			SkipFallback:       s.SkipFallback,
			Runtimes:           s.Runtimes,
			Capabilities:       s.Capabilities,
			HostAliases:        s.HostAliases,
			NodeSelector:       s.NodeSelector,
			Tolerations:        s.Tolerations,
		},
		CADigest:          caDigest(ca),
		ClientCertificate: clientCert,
	}
}

// ProxiedMirrorOf is spec.mirrorOf with the path of each upstream that a provisioned Nexus
// proxy repository serves and that names no path of its own (ProxyPath).
func ProxiedMirrorOf(s v1alpha1.RegistryMirrorSpec) []v1alpha1.UpstreamMirror {
	if s.Provision == nil || s.Provision.Nexus == nil || len(s.Provision.Nexus.Proxies) == 0 {
		return s.MirrorOf
	}
	out := slices.Clone(s.MirrorOf)
	for i, m := range out {
		for _, p := range s.Provision.Nexus.Proxies {
			if p.Upstream == m.Host && m.Path == "" {
				out[i].Path = ProxyPath(s.Endpoint, p.Repository)
			}
		}
	}
	return out
}

// ProxyPath is where nodes reach a Nexus proxy repository on the mirror's endpoint host:
// with path-based routing (the endpoint at the host's root, as for the hosted repository)
// /v2/<repository>, which containerd (override_path) and CRI-O (a mirror location
// <host>/<repository>) both express; otherwise the repository's base path
// /repository/<repository>/v2, which every Nexus version serves (containerd only).
func ProxyPath(endpoint, repository string) string {
	if PathRouted(endpoint) {
		return "/v2/" + repository
	}
	return "/repository/" + repository + "/v2"
}

// PathRouted says whether nodes reach the registry at the root of endpoint (no path), the
// shape that needs Nexus's path-based routing.
func PathRouted(endpoint string) bool {
	if endpoint == "" {
		return true
	}
	u, err := url.Parse(endpoint)
	return err != nil || strings.Trim(u.Path, "/") == ""
}

func caDigest(ca []byte) string {
	if len(ca) == 0 {
		return ""
	}
	return CADigest(ca)
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
