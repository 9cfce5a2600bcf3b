// Package send is the delivery stage: it checks each delivery against the
// member-consent table (a channel the member opted out of since the offer
// was filtered records `suppressed` and sends nothing), hands it to its
// channel's adapter (rate-limited, retried briefly with backoff on 429, 5xx
// and network errors, permanent failures recorded and not retried) and
// writes the outcome to delivery.results, which feeds member-state. A
// delivery of a held-out member (the campaign's control group) is recorded
// `held_out` and not handed to any channel.
//
// Channel outages lose nothing. A delivery whose quick retries run out on
// a retryable error is not recorded as failed: it is kept in the member's
// row with a due time and tried again when the stage's timer releases it
// (5 s, then doubling up to 5 min), until its offer expires (or
// RetryHorizon after its first attempt). Only a permanent error or the
// expiry records `failed`, with the reason. Meanwhile the partition keeps
// flowing: other members' deliveries are not held up behind one channel.
//
// Sends do not serialise a partition: up to Config.Concurrency of a
// partition's deliveries are with their channels at once (see lanes), a
// member's deliveries still one after another and in order, and each
// outcome is recorded by the partition's loop before its input is
// committed.
//
// Idempotency: the stage's table (send-table, keyed by member) records
// every delivery ID it finished or is retrying, so a replayed or
// redelivered delivery is never sent again. What remains is the window
// between a channel accepting a message and the stage's record reaching
// its changelog (the settle message and then the log): a crash there
// redelivers the input after restart, up to Concurrency deliveries per
// partition. A graceful stop does not: it lets the sends in flight finish
// (up to Config.ShutdownGrace) and records them first. LINE
// deduplicates that second send itself (X-Line-Retry-Key is derived from
// the delivery ID), and the in-app inbox drops a repeated delivery ID; FCM
// and SMTP have no idempotency key, so for push and mail the guarantee is
// at-least-once (the mail carries the same Message-ID, which many clients
// use to hide duplicates).
package send

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/bytedance/sonic"
	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/processors/timer"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupSend

// Deliverer sends a delivery on its channel; channels.Router is one.
type Deliverer interface {
	Deliver(ctx context.Context, d *topics.Delivery) channels.Outcome
}

var (
	duplicates = stage.Metrics.NewCounter(prometheus.CounterOpts{
		Name: "rtm_send_duplicates_total",
		Help: "Deliveries not sent because their delivery ID was already sent or is being retried.",
	})
	rescheduled = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_send_rescheduled_total",
		Help: "Deliveries put back to be retried later after a retryable failure, by channel.",
	}, []string{"channel"})
	suppressed = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_send_suppressed_total",
		Help: "Deliveries not sent because the member-consent table no longer allows their channel (an opt-out, unsubscribe or withdrawal after the offer was filtered), by channel.",
	}, []string{"channel"})
	heldOut = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_send_held_out_total",
		Help: "Deliveries recorded held_out instead of sent: their member is in the campaign's hold-out (control) group, by channel.",
	}, []string{"channel"})
	inFlight = stage.Metrics.NewGauge(prometheus.GaugeOpts{
		Name: "rtm_send_in_flight",
		Help: "Deliveries handed to their channel and not yet answered, over the partitions this process owns (at most send_concurrency per partition).",
	})
	retried = stage.Metrics.NewCounter(prometheus.CounterOpts{
		Name: "rtm_send_retries_total",
		Help: "Rescheduled deliveries tried again when their due time came.",
	})
	endToEnd = stage.Metrics.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rtm_end_to_end_latency_seconds",
		Help: "From the triggering event's time (or the end of a timing hold) to the delivery's result, by the event's type and the channel.",
		// 5 ms to about 11 minutes: retries during an outage reach minutes
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 18),
	}, []string{"campaign_kind", "channel"})
)

// observeEndToEnd records a delivery's end-to-end latency at its result,
// at now. The campaign_kind label is the event type, bounded by
// detect.Kind; deliveries without an event time (produced before
// deliveries carried one) are not observed.
func observeEndToEnd(d *topics.Delivery, now time.Time) {
	from := d.EventAt
	if d.HeldUntil.After(from) {
		from = d.HeldUntil
	}
	if from.IsZero() {
		return
	}
	endToEnd.WithLabelValues(detect.Kind(d.EventType), d.Channel).Observe(max(now.Sub(from), 0).Seconds())
}

// Table is the stage's group table; DueIndex indexes its retries by due
// time.
var Table = goka.GroupTable(goka.Group(Group))

const DueIndex = "due"

// ConsentTable is member-state's member-consent table, which the stage
// joins: a small row per member (the channels it may be sent on now), not
// the member table.
var ConsentTable = goka.Table(topics.MemberConsent)

// Loop is the stage's timer loop.
var Loop = goka.Stream(topics.LoopOf(Group))

// Config tunes the retry schedule. Zero values take the defaults.
type Config struct {
	// RetryBase is the wait before the first rescheduled attempt; it
	// doubles per attempt up to RetryMax. Defaults 5 s and 5 min.
	RetryBase, RetryMax time.Duration
	// RetryHorizon bounds the retries of a delivery whose offer has no
	// expiry. Default 24 h.
	RetryHorizon time.Duration
	// TickInterval is how often due retries are looked for. Default 1 s.
	TickInterval time.Duration
	// Clock is the stage's time: retry decisions and ticks. Default
	// timer.Wall.
	Clock timer.Clock
	// Concurrency is how many deliveries of one partition may be with
	// their channels at once. A member's deliveries go one at a time
	// whatever it is. Default 8; 1 sends one delivery per partition at a
	// time.
	Concurrency int
	// ShutdownGrace is how long a stopping partition lets the sends in
	// flight finish (and records them) before it cuts them short; a cut
	// delivery is not recorded and is sent again by the partition's next
	// owner. Default 5 s.
	ShutdownGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.RetryBase <= 0 {
		c.RetryBase = 5 * time.Second
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = max(5*time.Minute, c.RetryBase)
	}
	if c.RetryHorizon <= 0 {
		c.RetryHorizon = 24 * time.Hour
	}
	if c.TickInterval <= 0 {
		c.TickInterval = time.Second
	}
	if c.Clock == nil {
		c.Clock = timer.Wall
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	return c
}

// DefaultConcurrency is Config.Concurrency's default.
const DefaultConcurrency = 8

// maxSent bounds a member's record: far more than any frequency cap lets
// through in the time a delivery can be replayed.
const maxSent = 512

// Log is a member's value in send-table: the deliveries already finished,
// and those waiting to be tried again.
type Log struct {
	Sent    []Sent  `json:"sent"`
	Retries []Retry `json:"retries,omitempty"`
}

// Retry is a delivery waiting for its next attempt.
type Retry struct {
	Delivery topics.Delivery `json:"delivery"`
	// Attempts so far, and when the first was made.
	Attempts int       `json:"attempts"`
	First    time.Time `json:"first"`
	// Due is when to try again.
	Due       time.Time `json:"due"`
	LastError string    `json:"last_error"`
}

// Sent is one finished delivery.
type Sent struct {
	DeliveryID string    `json:"delivery_id"`
	Status     string    `json:"status"`
	At         time.Time `json:"at"`
}

func (l *Log) has(id string) bool {
	return slices.ContainsFunc(l.Sent, func(s Sent) bool { return s.DeliveryID == id }) ||
		slices.ContainsFunc(l.Retries, func(r Retry) bool { return r.Delivery.DeliveryID == id })
}

func (l *Log) add(s Sent) {
	l.Sent = append(l.Sent, s)
	if len(l.Sent) > maxSent {
		l.Sent = slices.Delete(l.Sent, 0, len(l.Sent)-maxSent)
	}
}

// Codec is the send-table codec.
type Codec = stage.TableCodec[Log]

// Indexes are the send table's: its retries by due time.
func Indexes() map[string]state.Indexer { return map[string]state.Indexer{DueIndex: IndexDue} }

// IndexDue indexes a member's retries by due time.
func IndexDue(_ string, value []byte) ([]string, error) {
	var l Log
	if err := sonic.Unmarshal(value, &l); err != nil {
		return nil, nil // not ours to judge here; the row is rejected where it is decoded
	}
	keys := make([]string, 0, len(l.Retries))
	for _, r := range l.Retries {
		keys = append(keys, timer.DueKey(r.Due))
	}
	return keys, nil
}

type sender struct {
	env   stage.Env
	d     Deliverer
	cfg   Config
	keys  stage.Keys
	lanes *lanes
	// settles carries finished sends back to their partition (the loop
	// topic); set by Run before the processor starts.
	settles *goka.Emitter
}

// Graph is the stage's topology.
func (s *sender) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.Deliveries), stage.Raw, s.delivery),
		goka.Join(ConsentTable, topics.ConsentCodec{}),
		goka.Loop(stage.Raw, timer.Loop(s.env, s.keys, Table, DueIndex, s.release, s.settle)),
		goka.Persist(Codec{}),
		goka.Output(goka.Stream(topics.DeliveryResults), topics.DeliveryResultCodec{}),
		stage.DLQOutput(),
	)
}

// Stage is the send processor and its retry timer.
type Stage struct {
	proc *goka.Processor
	s    *sender
}

// New returns the send stage.
func New(env stage.Env, d Deliverer, cfg Config) (*Stage, error) {
	cfg = cfg.withDefaults()
	s := &sender{env: env, d: d, cfg: cfg, keys: stage.KeysOf(Group, env), lanes: newLanes(cfg.Concurrency)}
	// Serve every channel's series from the start, at 0: an alert or a
	// panel's rate() needs it before the first suppression.
	for _, ch := range rules.Channels {
		suppressed.WithLabelValues(ch)
		heldOut.WithLabelValues(ch)
	}
	p, err := goka.NewProcessor(env.Brokers, s.Graph(), env.ProcessorOptions()...)
	if err != nil {
		return nil, err
	}
	return &Stage{proc: p, s: s}, nil
}

// Run runs the processor and its ticker until ctx is done. The emitter of
// settle messages outlives the processor: Goka waits for the sends in
// flight (their deferred commits) before the processor returns, and they
// settle through it.
func (st *Stage) Run(ctx context.Context) error {
	em, err := goka.NewEmitter(st.s.env.Brokers, Loop, timer.Codec{}, st.s.env.EmitterOptions()...)
	if err != nil {
		return fmt.Errorf("starting the settle emitter on %s: %w", Loop, err)
	}
	st.s.settles = em
	err = timer.Run(ctx, st.proc, st.s.env, Loop, st.s.cfg.TickInterval, st.s.cfg.Clock)
	if ferr := em.Finish(); ferr != nil && err == nil {
		err = fmt.Errorf("flushing settle messages: %w", ferr)
	}
	return err
}

// WaitForReadyContext waits until the processor has recovered and runs.
func (st *Stage) WaitForReadyContext(ctx context.Context) error {
	return st.proc.WaitForReadyContext(ctx)
}

// StatsWithContext is the processor's statistics (recovery progress).
func (st *Stage) StatsWithContext(ctx context.Context) *goka.ProcessorStats {
	return st.proc.StatsWithContext(ctx)
}

func (s *sender) delivery(ctx goka.Context, msg any) {
	d, ok := stage.DecodeKeyed(ctx, s.keys, topics.DeliveryCodec{}, msg, stage.DeliveryIdentity)
	if !ok {
		return
	}
	l, _ := ctx.Value().(*Log)
	if l == nil {
		l = &Log{}
	}
	ln := s.lanes.of(ctx.Partition())
	if l.has(d.DeliveryID) || ln.pending(d.DeliveryID) {
		duplicates.Inc()
		return
	}
	now := s.cfg.Clock.Now().UTC()
	if s.decided(ctx, l, d, 0, now) {
		ctx.SetValue(l)
		return
	}
	s.dispatch(ctx, ln, Retry{Delivery: *d, First: now})
}

// release retries the member's deliveries that are due at the tick's time.
// Retries are sent from the callback, one at a time: they are the few a
// channel outage left behind.
func (s *sender) release(ctx goka.Context, at time.Time) {
	l, _ := ctx.Value().(*Log)
	if l == nil || len(l.Retries) == 0 {
		return
	}
	var due []Retry
	l.Retries = slices.DeleteFunc(l.Retries, func(r Retry) bool {
		if r.Due.After(at) {
			return false
		}
		due = append(due, r)
		return true
	})
	if len(due) == 0 {
		return
	}
	retried.Add(float64(len(due)))
	now := s.cfg.Clock.Now().UTC()
	for _, r := range due {
		if !s.attempt(ctx, l, r, now) {
			return
		}
	}
	ctx.SetValue(l)
}

// decided records, in l, a delivery that must not reach its channel: its
// member's consent withdrew the channel since the offer was filtered
// (suppressed), or its member is held out (held_out). It reports whether
// it did.
func (s *sender) decided(ctx goka.Context, l *Log, d *topics.Delivery, attempts int, now time.Time) bool {
	if c, _ := ctx.Join(ConsentTable).(*topics.Consent); c != nil && !c.Allows(d.Channel) {
		// Consent wins over the snapshot the offer was filtered with: the
		// member opted out, unsubscribed or left since. Checked on every
		// attempt, so it holds for retries after an outage too.
		suppressed.WithLabelValues(d.Channel).Inc()
		s.record(ctx, l, d, channels.Outcome{Status: topics.StatusSuppressed, Attempts: attempts,
			Err: fmt.Errorf("member-consent no longer allows %s (as of %s)", d.Channel, c.At.Format(time.RFC3339))}, now)
		return true
	}
	if d.HeldOut {
		// The control group: everything up to here happened as for a
		// sent delivery (filter, channel, timing's cap slot, render,
		// consent), so the two groups differ only in the message itself.
		heldOut.WithLabelValues(d.Channel).Inc()
		s.record(ctx, l, d, channels.Outcome{Status: topics.StatusHeldOut}, now)
		return true
	}
	return false
}

// attempt tries a delivery once from the callback (with the adapter's
// quick retries) and records the outcome in l: sent, failed for good
// (result emitted), or put back with its next due time. It returns false
// when the attempt was cut short by shutdown; the message is then failed
// uncommitted (stage.Fail) and l must not be stored.
func (s *sender) attempt(ctx goka.Context, l *Log, r Retry, now time.Time) bool {
	if s.decided(ctx, l, &r.Delivery, r.Attempts, now) {
		return true
	}
	out := s.d.Deliver(ctx.Context(), &r.Delivery)
	if cutShort(ctx.Context(), out) {
		// Shutting down mid-delivery: record nothing, so the delivery is
		// processed again by whoever owns the partition next.
		stage.Fail(ctx, out.Err)
		return false
	}
	s.apply(ctx, l, s.conclude(r, out, now))
	return true
}

// cutShort reports whether out is ctx's end rather than the channel's
// answer.
func cutShort(ctx context.Context, out channels.Outcome) bool {
	return out.Err != nil && ctx.Err() != nil && errors.Is(out.Err, ctx.Err())
}

// dispatch sends a delivery from a goroutine of its own, in one of the
// partition's Concurrency slots, after the member's send in flight (if
// any) has returned, and returns with the input's commit deferred. The
// outcome comes back through the loop topic (settle); the input is
// committed once that settle message is in Kafka, so a crash loses no
// delivery: either the settle message is there and records it, or the
// input is delivered again.
func (s *sender) dispatch(ctx goka.Context, ln *lane, r Retry) {
	pctx, d := ctx.Context(), &r.Delivery
	if c := ln.busy(d.MemberID); c != nil {
		select {
		case <-c:
		case <-pctx.Done():
			stage.Fail(ctx, pctx.Err())
			return
		}
	}
	select {
	case ln.slots <- struct{}{}:
	case <-pctx.Done():
		stage.Fail(ctx, pctx.Err())
		return
	}
	inFlight.Inc()
	memberDone := ln.start(d.DeliveryID, d.MemberID)
	commit, key := ctx.DeferCommit(), ctx.Key()
	go func() {
		sctx, stop := s.graceful(pctx)
		out, err := s.deliver(sctx, d)
		cut := err == nil && cutShort(sctx, out)
		stop()
		memberDone()
		<-ln.slots
		inFlight.Dec()
		if err != nil {
			// The adapter panicked: the stage stops with the error, as
			// a panic in a callback stops it, and the input is not
			// committed.
			ln.forget(d.DeliveryID)
			commit(err)
			return
		}
		if cut {
			// Cut short past the grace: nothing is recorded and the
			// input is not committed, so the partition's next owner
			// sends it again.
			ln.forget(d.DeliveryID)
			commit(out.Err)
			return
		}
		settled := func(err error) {
			if err != nil {
				// The input is not committed: it is sent again.
				ln.forget(d.DeliveryID)
			}
			commit(err)
		}
		now := s.cfg.Clock.Now().UTC()
		if err := s.emitSettle(key, s.conclude(r, out, now), now, settled); err != nil {
			settled(err)
		}
	}()
}

// deliver hands d to its channel. A panic there becomes an error: outside
// a callback it would take down every stage of the process.
func (s *sender) deliver(ctx context.Context, d *topics.Delivery) (out channels.Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic delivering %s: %v\n%s", d.DeliveryID, p, debug.Stack())
		}
	}()
	return s.d.Deliver(ctx, d), nil
}

// graceful is the context of a send started under pctx: it outlives pctx
// by ShutdownGrace, so that a stopping partition records the sends its
// channels are answering instead of sending them a second time after the
// restart.
func (s *sender) graceful(pctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(pctx))
	stop := context.AfterFunc(pctx, func() { time.AfterFunc(s.cfg.ShutdownGrace, cancel) })
	return ctx, func() { stop(); cancel() }
}

// settlement is the outcome of a send, on its way back to the member's
// partition: a result to record, or the delivery put back to be retried.
type settlement struct {
	// Retry is the delivery with its attempts so far; without a Result it
	// is to be tried again at Retry.Due.
	Retry Retry `json:"retry"`
	// Result is the delivery.results record, when the delivery is done.
	Result *topics.DeliveryResult `json:"result,omitempty"`
}

// conclude decides what becomes of a delivery after an attempt that
// answered out at now: put back with its next due time when the failure is
// retryable and the offer has not expired, otherwise its result.
func (s *sender) conclude(r Retry, out channels.Outcome, now time.Time) settlement {
	d := &r.Delivery
	r.Attempts += out.Attempts
	if out.Status == topics.StatusFailed && !channels.IsPermanent(out.Err) {
		wait := s.backoff(r.Attempts)
		var re *channels.RetryableError
		if errors.As(out.Err, &re) && re.RetryAfter > wait {
			wait = re.RetryAfter
		}
		expiry := d.ExpiresAt
		if expiry.IsZero() {
			expiry = r.First.Add(s.cfg.RetryHorizon)
		}
		if next := now.Add(wait); next.Before(expiry) {
			r.Due, r.LastError = next, out.Err.Error()
			return settlement{Retry: r}
		}
		out.Err = fmt.Errorf("offer expired at %s after %d attempts: %w", expiry.Format(time.RFC3339), r.Attempts, out.Err)
	}
	out.Attempts = r.Attempts
	res := out.Result(d, now)
	return settlement{Retry: r, Result: &res}
}

// emitSettle sends st to the member's partition through the loop topic and
// calls settled once Kafka has it (or has failed to take it).
func (s *sender) emitSettle(member string, st settlement, now time.Time, settled func(error)) error {
	if st.Result != nil {
		st.Retry.Delivery.Payload = nil // sent: the loop needs its identity, not its message
	}
	body, err := sonic.Marshal(&st)
	if err != nil {
		return fmt.Errorf("encoding the outcome of delivery %s: %w", st.Retry.Delivery.DeliveryID, err)
	}
	p, err := s.settles.Emit(member, &timer.Message{Kind: timer.Settle, At: now, Body: body})
	if err != nil {
		return fmt.Errorf("emitting the outcome of delivery %s: %w", st.Retry.Delivery.DeliveryID, err)
	}
	p.Then(settled)
	return nil
}

// settle records a send's outcome, back from its goroutine, in the
// member's log: the result emitted, or the delivery put back to be retried.
// An outcome already in the log (a settle message read again after a
// restart) changes nothing.
func (s *sender) settle(ctx goka.Context, body []byte) {
	var st settlement
	if err := sonic.Unmarshal(body, &st); err != nil {
		stage.DeadLetter(ctx, Group, body, fmt.Errorf("decoding a settle message: %w", err))
		return
	}
	d := &st.Retry.Delivery
	if d.DeliveryID == "" || d.MemberID != ctx.Key() {
		stage.DeadLetter(ctx, Group, body, fmt.Errorf("settle message for delivery %q of member %q under key %q", d.DeliveryID, d.MemberID, ctx.Key()))
		return
	}
	defer s.lanes.of(ctx.Partition()).forget(d.DeliveryID)
	l, _ := ctx.Value().(*Log)
	if l == nil {
		l = &Log{}
	}
	if l.has(d.DeliveryID) {
		duplicates.Inc()
		return
	}
	s.apply(ctx, l, st)
	ctx.SetValue(l)
}

// apply records a settlement in l: the delivery put back, or finished.
func (s *sender) apply(ctx goka.Context, l *Log, st settlement) {
	if st.Result == nil {
		l.Retries = append(l.Retries, st.Retry)
		rescheduled.WithLabelValues(st.Retry.Delivery.Channel).Inc()
		return
	}
	s.finish(ctx, l, &st.Retry.Delivery, *st.Result)
}

// record finishes a delivery decided without its channel.
func (s *sender) record(ctx goka.Context, l *Log, d *topics.Delivery, out channels.Outcome, now time.Time) {
	s.finish(ctx, l, d, out.Result(d, now))
}

// finish remembers a finished delivery in l (so a replay is not sent
// again) and emits its result.
func (s *sender) finish(ctx goka.Context, l *Log, d *topics.Delivery, res topics.DeliveryResult) {
	l.add(Sent{DeliveryID: res.DeliveryID, Status: res.Status, At: res.At})
	ctx.Emit(goka.Stream(topics.DeliveryResults), ctx.Key(), &res)
	if res.Status != topics.StatusSuppressed && res.Status != topics.StatusHeldOut {
		observeEndToEnd(d, time.Now())
	}
	stage.CountEmit(ctx, Group, topics.DeliveryResults, 1)
}

// backoff is the wait after n attempts: RetryBase·2^(n-1), capped.
func (s *sender) backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n-1 >= 20 {
		return s.cfg.RetryMax
	}
	return min(s.cfg.RetryBase<<(n-1), s.cfg.RetryMax)
}
