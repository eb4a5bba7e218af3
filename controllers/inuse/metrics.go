package inuse

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var inUse = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "regwire_images_in_use",
	Help: "Images that Pods run from upstreams a RegistryMirror keeps (spec.imagesInUse), by state: images, atMirror, notAtMirror (failing, or not copied yet).",
}, []string{"mirror", "state"})

// Collectors are the metrics this package exports.
func Collectors() []prometheus.Collector { return []prometheus.Collector{inUse} }

func init() { metrics.Registry.MustRegister(Collectors()...) }
