package controllers_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/regwire/regwire/controllers/imagesync"
	"github.com/regwire/regwire/controllers/inuse"
	"github.com/regwire/regwire/controllers/registrymirror"
	"github.com/regwire/regwire/internal/test/envtest"
)

// metricName finds the metrics a PromQL expression reads: regwire's own and the
// controller-runtime ones the dashboard and alerts use.
var metricName = regexp.MustCompile(`\b(?:regwire|controller_runtime|workqueue)_[a-z0-9_]+\b`)

// TestTheDashboardAndAlertsQueryOnlyExportedMetrics: every metric the Grafana dashboard
// and the alert rules (config/monitoring) query is one the manager exports, and every
// metric regwire exports is on the dashboard.
func TestTheDashboardAndAlertsQueryOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	exported := map[string]bool{}
	addHistogram := func(name string) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			exported[name+suffix] = true
		}
	}
	var exprs []string
	dashboardJSON, err := os.ReadFile("../config/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboardJSON, &dashboard); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	queriedByDashboard := map[string]bool{}
	for _, p := range dashboard.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				queriedByDashboard[n] = true
			}
		}
	}
	b, err := os.ReadFile("../config/monitoring/prometheus_rule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &rule); err != nil {
		t.Fatalf("prometheus_rule.yaml: %v", err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 15 {
		t.Fatalf("found %d expressions in the dashboard and the rules", len(exprs))
	}

	// The manager of this suite runs in this process. controller-runtime's series appear
	// as its controllers start and reconcile: a mirror of this test's own makes sure they
	// do, whichever tests ran before.
	env.NewMirror(t, "dashboard-metrics", nil)
	envtest.Eventually(t, func() error {
		families, err := metrics.Registry.Gather()
		if err != nil {
			return err
		}
		for _, f := range families {
			exported[f.GetName()] = true
			if f.GetType() == dto.MetricType_HISTOGRAM {
				addHistogram(f.GetName())
			}
		}
		var missing []string
		for _, e := range exprs {
			for _, n := range metricName.FindAllString(e, -1) {
				if !strings.HasPrefix(n, "regwire_") && !exported[n] {
					missing = append(missing, n)
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("controller-runtime exports none of %v", missing)
		}
		return nil
	})
	// regwire's own, series or not (a vector without label values yet has none).
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	var ours []string
	for _, c := range slices.Concat(registrymirror.Collectors(), imagesync.Collectors(), inuse.Collectors()) {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			name := fqName.FindStringSubmatch(d.String())[1]
			ours = append(ours, name)
			exported[name] = true
			switch c.(type) {
			case prometheus.Histogram, *prometheus.HistogramVec:
				addHistogram(name)
			}
		}
	}

	for _, e := range exprs {
		names := metricName.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("%q queries no regwire or controller-runtime metric", e)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%q queries %s, which the manager does not export", e, n)
			}
		}
	}
	for _, n := range ours {
		if !queriedByDashboard[n] && !queriedByDashboard[n+"_bucket"] && !queriedByDashboard[n+"_count"] && !queriedByDashboard[n+"_sum"] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}
