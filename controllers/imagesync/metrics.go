package imagesync

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	syncBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regwire_imagesync_bytes_total",
		Help: "Bytes ImageSyncs uploaded to target registries.",
	}, []string{"namespace", "name"})
	syncDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "regwire_imagesync_duration_seconds",
		Help:    "Duration of ImageSync runs.",
		Buckets: prometheus.ExponentialBuckets(0.05, 4, 8),
	})
	prunedTags = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regwire_imagesync_pruned_tags_total",
		Help: "Tags ImageSyncs removed from target registries (spec.prune), by namespace.",
	}, []string{"namespace"})
	sourceRateLimitRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "regwire_source_ratelimit_remaining",
		Help: "Pulls left that a source registry last published (Docker Hub's RateLimit-Remaining); copies stop reading manifests at --rate-limit-floor.",
	}, []string{"registry"})
	syncErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regwire_imagesync_errors_total",
		Help: "Failed ImageSync runs and tags, by reason.",
	}, []string{"reason"})
)

// forgetMetrics drops a deleted ImageSync's series: at thousands of ImageSyncs created and
// deleted over a manager's life, series of objects that are gone would only grow.
func forgetMetrics(key types.NamespacedName) {
	syncBytes.DeleteLabelValues(key.Namespace, key.Name)
}

// Collectors are the metrics this package exports.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{syncBytes, syncDuration, syncErrors, prunedTags, sourceRateLimitRemaining}
}

func init() {
	metrics.Registry.MustRegister(Collectors()...)
}
