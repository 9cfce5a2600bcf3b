package stage

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsGoOnlyToTheInjectedRegistry: stage metrics are on the
// registry RegisterMetrics is given (twice is harmless), and not on
// Prometheus's global one.
func TestMetricsGoOnlyToTheInjectedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if err := RegisterMetrics(reg); err != nil {
			t.Fatal(err)
		}
	}
	Restarts.WithLabelValues("registry-test").Inc()
	if n, err := testutil.GatherAndCount(reg, "rtm_stage_restarts_total"); err != nil || n == 0 {
		t.Errorf("injected registry: %d series of rtm_stage_restarts_total, %v", n, err)
	}
	if n, _ := testutil.GatherAndCount(prometheus.DefaultGatherer, "rtm_stage_restarts_total"); n != 0 {
		t.Errorf("the global registry has %d series of a stage metric", n)
	}
}
