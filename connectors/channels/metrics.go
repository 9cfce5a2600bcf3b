package channels

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the send-side metrics, shared by every Deliverer of a
// process:
//
//	rtm_send_attempts_total{channel,result}    result: ok, retryable, permanent
//	rtm_send_outcomes_total{channel,status}    status: sent, failed
//	rtm_send_attempt_duration_seconds{channel} one adapter Send, rate-limit wait excluded
type Metrics struct {
	attempts *prometheus.CounterVec
	outcomes *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg; nil reg
// registers nothing (tests, or a caller that only wants the behaviour).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtm_send_attempts_total", Help: "Channel adapter send attempts by result (ok, retryable, permanent).",
		}, []string{"channel", "result"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtm_send_outcomes_total", Help: "Deliveries by final status (sent, failed).",
		}, []string{"channel", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rtm_send_attempt_duration_seconds", Help: "Duration of one channel adapter send attempt.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.attempts, m.outcomes, m.latency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("registering send metrics: %w (create Metrics once and share it between Deliverers)", err)
			}
			return nil, fmt.Errorf("registering send metrics: %w", err)
		}
	}
	return m, nil
}

// attemptResult is the result label of an attempt's error.
func attemptResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case IsPermanent(err):
		return "permanent"
	default:
		return "retryable"
	}
}
