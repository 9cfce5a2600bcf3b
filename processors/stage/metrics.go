package stage

import (
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
	// Emitted counts records a stage emitted, by output topic.
	Emitted = Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_stage_emitted_total",
		Help: "Records emitted by a stage.",
	}, []string{"stage", "topic"})
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
)
