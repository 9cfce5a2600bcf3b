package stage

import (
	"errors"
	"time"
	"unicode/utf8"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/rtm-project/rtm/topics"
)

// Stages read their inputs as raw bytes and decode inside the callback:
// a Goka input codec that fails stops the whole processor, while a record
// that cannot be decoded must go to the dead-letter topic and processing
// must go on.

// Raw is the codec of every stage input.
var Raw = new(codec.Bytes)

// DLQOutput is the edge every stage declares to write dead letters.
func DLQOutput() goka.Edge { return goka.Output(goka.Stream(topics.DLQ), topics.DeadLetterCodec{}) }

// DeadLetter sends the message being processed to the dead-letter topic with
// the reason, and counts it.
func DeadLetter(ctx goka.Context, stage string, msg any, reason error) {
	raw, _ := msg.([]byte)
	dl := &topics.DeadLetter{
		Stage: stage, Topic: string(ctx.Topic()), Partition: ctx.Partition(), Offset: ctx.Offset(),
		Key: ctx.Key(), Reason: reason.Error(), At: time.Now().UTC(),
	}
	if utf8.Valid(raw) {
		dl.Value = string(raw)
	} else {
		dl.ValueBase64 = raw
	}
	deadLetters.WithLabelValues(stage, string(ctx.Topic())).Inc()
	ctx.Emit(goka.Stream(topics.DLQ), ctx.Key(), dl)
}

// Decode decodes the message being processed with c; when it cannot, the
// message goes to the dead-letter topic and ok is false.
func Decode[T any, P interface {
	*T
	topics.Message
}](ctx goka.Context, stage string, c topics.JSON[T, P], msg any) (v P, ok bool) {
	raw, isBytes := msg.([]byte)
	if !isBytes {
		DeadLetter(ctx, stage, msg, errors.New("input is not raw bytes (the stage must use stage.Raw)"))
		return nil, false
	}
	v, err := c.DecodeValue(raw)
	if err != nil {
		DeadLetter(ctx, stage, raw, err)
		return nil, false
	}
	processed.WithLabelValues(stage, string(ctx.Topic())).Inc()
	return v, true
}

// Fail stops the stage without committing the message being processed, so
// whoever owns the partition next processes it again. Use it instead of
// ctx.Fail: during a shutdown or a rebalance Goka's ctx.Fail only records
// the error and lets the callback return, and the message is then
// committed as if it had been handled — a delivery cut short by SIGTERM
// was lost that way. Recording the error on a deferred commit first makes
// Goka fail the message instead of committing it, in both cases.
func Fail(ctx goka.Context, err error) {
	ctx.DeferCommit()(err)
	ctx.Fail(err)
}
