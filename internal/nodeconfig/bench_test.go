package nodeconfig_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/test/testutil"
)

// BenchmarkRender renders the node configuration for 1, 10 and 100 mirrors, each with a
// CA, an upstream it mirrors and a host alias: what the agent does on every change.
// Compare runs with benchstat.
func BenchmarkRender(b *testing.B) {
	ca := []byte(testutil.NewCA(b, "bench CA", time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)).PEM)
	for _, n := range []int{1, 10, 100} {
		mirrors := make([]nodeconfig.Mirror, n)
		for i := range mirrors {
			host := fmt.Sprintf("registry-%d.example:5000", i)
			mirrors[i] = nodeconfig.Mirror{
				Name: fmt.Sprintf("m%d", i), Created: time.Unix(int64(i), 0), CA: ca,
				Spec: v1alpha1.RegistryMirrorSpec{
					Host:        v1alpha1.RegistryHost(host),
					Endpoint:    "https://" + host + "/repository/docker/v2",
					MirrorOf:    []v1alpha1.UpstreamMirror{{Host: v1alpha1.UpstreamHost(fmt.Sprintf("upstream-%d.example", i)), Path: "/v2/proxy"}},
					HostAliases: []v1alpha1.HostAlias{{IP: "10.0.0.1", Hostnames: []v1alpha1.Hostname{v1alpha1.Hostname(fmt.Sprintf("registry-%d.example", i))}}},
				},
			}
		}
		b.Run(fmt.Sprintf("mirrors=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c := nodeconfig.Render(mirrors); len(c.Errors) > 0 {
					b.Fatal(c.Errors)
				}
			}
		})
	}
}
