package registrymirror

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	nodesReadyGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regwire_nodes_ready",
		Help: "Nodes that applied a RegistryMirror's current configuration and reached its registry.",
	}, []string{"registry_mirror"})
	nodesDesiredGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regwire_nodes_desired",
		Help: "Nodes a RegistryMirror selects.",
	}, []string{"registry_mirror"})
	pullSecretsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regwire_pull_secrets",
		Help: "Namespaces holding a RegistryMirror's current pull secret.",
	}, []string{"registry_mirror"})
	caExpiryGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regwire_ca_expiry_timestamp_seconds",
		Help: "When the first certificate of a RegistryMirror's CA bundle expires (Unix time); absent without a CA bundle.",
	}, []string{"registry_mirror"})
)

// Collectors are the metrics this package exports.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{nodesReadyGauge, nodesDesiredGauge, pullSecretsGauge, caExpiryGauge}
}

func init() {
	metrics.Registry.MustRegister(Collectors()...)
}

// forgetMetrics drops the series of a deleted RegistryMirror.
func forgetMetrics(mirror string) {
	nodesReadyGauge.DeleteLabelValues(mirror)
	nodesDesiredGauge.DeleteLabelValues(mirror)
	pullSecretsGauge.DeleteLabelValues(mirror)
	caExpiryGauge.DeleteLabelValues(mirror)
}
