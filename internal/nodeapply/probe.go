package nodeapply

import (
	"context"

	"github.com/regwire/regwire/internal/nodeconfig"
	"github.com/regwire/regwire/internal/probe"
)

// EndpointResult is the probe of one of a mirror's endpoints.
type EndpointResult struct {
	URL string
	probe.Result
}

// ProbeEndpoints probes each of the mirror's endpoints in priority order with probeOne and
// returns every result and the index of the one the runtimes would use: the first that
// answered, or the first endpoint when none did.
func ProbeEndpoints(ctx context.Context, m nodeconfig.Mirror, probeOne func(context.Context, nodeconfig.Mirror) probe.Result) (results []EndpointResult, chosen int) {
	for i, u := range m.Endpoints() {
		one := m
		one.Spec.Endpoint, one.Spec.FallbackEndpoints = u, nil
		results = append(results, EndpointResult{URL: u, Result: probeOne(ctx, one)})
		if results[i].Reachable && !results[chosen].Reachable {
			chosen = i
		}
	}
	return results, chosen
}
