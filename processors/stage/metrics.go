package stage

import (
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics every stage shares; stage-specific ones live with the stage.
var (
	processed = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_stage_records_total",
		Help: "Input records decoded by a stage.",
	}, []string{"stage", "topic"})
	deadLetters = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_stage_dead_letters_total",
		Help: "Input records a stage sent to the dead-letter topic.",
	}, []string{"stage", "topic"})
	emitted = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_stage_emitted_total",
		Help: "Records emitted by a stage.",
	}, []string{"stage", "topic"})
	stageLatency = Metrics.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rtm_stage_latency_seconds",
		Help: "From the timestamp of the input record a stage handled to the stage emitting its output: time waiting in Kafka plus processing.",
		// 1 ms to about 65 s
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
	}, []string{"stage"})
	// Rebalances counts the consumer-group assignments a stage received:
	// one at start, one more per rebalance.
	Rebalances = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_rebalances_total",
		Help: "Partition assignments a stage's consumer group handed this process (1 at start, +1 per rebalance).",
	}, []string{"group"})
	// Restarts counts supervised restarts of a stage after an error.
	Restarts = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_stage_restarts_total",
		Help: "Times a stage was restarted after it stopped with an error.",
	}, []string{"stage"})
	recovered = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_recovery_records_total",
		Help: "Changelog records restored into local stores while recovering a table (every stage that keeps or joins the table restores its own copy).",
	}, []string{"table"})
)

// CountEmit records that the stage emitted n records to topic while handling
// the input record of ctx, and how long after that record's timestamp:
// rtm_stage_emitted_total and rtm_stage_latency_seconds. Every stage
// counts its emits through it.
func CountEmit(ctx goka.Context, stage, topic string, n int) {
	emitted.WithLabelValues(stage, topic).Add(float64(n))
	observeSince(stageLatency.WithLabelValues(stage), ctx.Timestamp(), time.Now())
}

// observeSince observes now - from in seconds; a zero from (no record
// timestamp) is skipped, and a from in the future (clock skew between
// producer and stage) counts as 0.
func observeSince(o prometheus.Observer, from, now time.Time) {
	if from.IsZero() {
		return
	}
	o.Observe(max(now.Sub(from), 0).Seconds())
}
