package server

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	// Registered by their init functions: the dashboard reads them too.
	_ "github.com/answerback/answerback/libs/pipeline/aggregate"
	_ "github.com/answerback/answerback/libs/pipeline/dlq"
	_ "github.com/answerback/answerback/libs/pipeline/lag"
	_ "github.com/answerback/answerback/libs/projector"
)

// TestDashboardUsesRegisteredMetrics: every metric the Grafana dashboard
// (deploy/grafana/answerback.json) queries is one the services register on
// the default registry, so that renaming a metric without the dashboard
// fails here.
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../../deploy/grafana/answerback.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	names := regexp.MustCompile(`answerback_[a-z_]+`)
	seen := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, name := range names.FindAllString(target.Expr, -1) {
				seen++
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					name = strings.TrimSuffix(name, suffix)
				}
				if !registered(name) {
					t.Errorf("panel %q queries %s, which no package registers", p.Title, name)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("the dashboard queries no answerback_ metric")
	}
}

// registered reports whether name is registered on the default registry. A
// vector without children is not gathered, so it asks the registry itself:
// registering a probe under a name already taken fails.
func registered(name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
	if err := prometheus.Register(probe); err != nil {
		return true
	}
	prometheus.Unregister(probe)
	return false
}
