// Package send is the delivery stage: it hands each delivery to its
// channel's adapter (rate-limited, retried with backoff on 429 and 5xx,
// permanent failures recorded and not retried) and writes the outcome to
// delivery.results, which feeds member-state.
//
// Idempotency: the stage's table (send-table, keyed by member) records
// every delivery ID it finished, so a replayed or redelivered delivery is
// never sent again. What remains is the window between a channel accepting
// a message and the stage's record reaching its changelog: a crash there
// redelivers the input after restart. LINE deduplicates that second send
// itself (X-Line-Retry-Key is derived from the delivery ID), and the in-app
// inbox drops a repeated delivery ID; FCM and SMTP have no idempotency key,
// so for push and mail the guarantee is at-least-once (the mail carries the
// same Message-ID, which many clients use to hide duplicates).
package send

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/bytedance/sonic"
	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupSend

// Deliverer sends a delivery on its channel; channels.Router is one.
type Deliverer interface {
	Deliver(ctx context.Context, d *topics.Delivery) channels.Outcome
}

var duplicates = promauto.NewCounter(prometheus.CounterOpts{
	Name: "rtm_send_duplicates_total",
	Help: "Deliveries not sent because their delivery ID was already sent.",
})

// maxSent bounds a member's record: far more than any frequency cap lets
// through in the time a delivery can be replayed.
const maxSent = 512

// Log is a member's value in send-table: the deliveries already finished.
type Log struct {
	Sent []Sent `json:"sent"`
}

// Sent is one finished delivery.
type Sent struct {
	DeliveryID string    `json:"delivery_id"`
	Status     string    `json:"status"`
	At         time.Time `json:"at"`
}

func (l *Log) has(id string) bool {
	return slices.ContainsFunc(l.Sent, func(s Sent) bool { return s.DeliveryID == id })
}

func (l *Log) add(s Sent) {
	l.Sent = append(l.Sent, s)
	if len(l.Sent) > maxSent {
		l.Sent = slices.Delete(l.Sent, 0, len(l.Sent)-maxSent)
	}
}

// Codec is the send-table codec.
type Codec struct{}

func (Codec) Encode(v any) ([]byte, error) { return sonic.Marshal(v) }
func (Codec) Decode(b []byte) (any, error) {
	l := new(Log)
	if err := sonic.Unmarshal(b, l); err != nil {
		return nil, err
	}
	return l, nil
}

type sender struct {
	d   Deliverer
	now func() time.Time
}

// Graph is the stage's topology.
func (s *sender) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.Deliveries), stage.Raw, s.delivery),
		goka.Persist(Codec{}),
		goka.Output(goka.Stream(topics.DeliveryResults), topics.DeliveryResultCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the send processor.
func New(env stage.Env, d Deliverer) (*goka.Processor, error) {
	s := &sender{d: d, now: time.Now}
	return goka.NewProcessor(env.Brokers, s.Graph(), env.ProcessorOptions()...)
}

func (s *sender) delivery(ctx goka.Context, msg any) {
	d, ok := stage.Decode(ctx, Group, topics.DeliveryCodec{}, msg)
	if !ok {
		return
	}
	l, _ := ctx.Value().(*Log)
	if l == nil {
		l = &Log{}
	}
	if l.has(d.DeliveryID) {
		duplicates.Inc()
		return
	}
	out := s.d.Deliver(ctx.Context(), d)
	if out.Err != nil && errors.Is(out.Err, ctx.Context().Err()) && ctx.Context().Err() != nil {
		// Shutting down mid-delivery: record nothing, so the delivery is
		// processed again after restart.
		stage.Fail(ctx, out.Err)
		return
	}
	at := s.now().UTC()
	l.add(Sent{DeliveryID: d.DeliveryID, Status: out.Status, At: at})
	ctx.SetValue(l)
	r := out.Result(d, at)
	ctx.Emit(goka.Stream(topics.DeliveryResults), ctx.Key(), &r)
	stage.Emitted.WithLabelValues(Group, topics.DeliveryResults).Inc()
}
