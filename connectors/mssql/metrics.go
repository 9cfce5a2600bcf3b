package mssql

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's Prometheus series. They are registered on the
// Registerer given to New (none when nil), never on the global registry.
type metrics struct {
	rows        *prometheus.CounterVec
	lag         *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	resyncs     *prometheus.CounterVec
	errors      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_cdc_rows_total",
			Help: "Change rows committed to Kafka, by table and op."}, []string{"table", "op"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rtm_cdc_lag_versions",
			Help: "Change Tracking versions not yet committed to Kafka, as of the last poll."}, []string{"table"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rtm_cdc_last_success_timestamp_seconds",
			Help: "Unix time of the last successful poll (and commit, if there were changes)."}, []string{"table"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_cdc_resyncs_total",
			Help: "Resyncs started: the checkpoint was older than the minimum valid version, ahead of the current version, or from another recovery fork (a restore)."}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_cdc_errors_total",
			Help: "Failed polls or transactions, by where they failed (source, kafka)."}, []string{"table", "where"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rows, m.lag, m.lastSuccess, m.resyncs, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering cdc metrics: %w", err)
			}
		}
	}
	return m, nil
}
