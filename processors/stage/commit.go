package stage

import (
	"context"
	"sync"

	"github.com/IBM/sarama"
)

// Goka commits a message (sarama's MarkOffset of offset+1) when its
// callback and all its emits have succeeded, and a message whose emit
// failed is never marked: the processor stops instead. But emits finish
// out of order, and Kafka keeps one committed offset per partition, so a
// later message that succeeded marks an offset past the one that failed,
// and that offset is committed on the way down: the failed message's
// outputs (an offer, a delivery) are lost with lag 0. Measured on main
// before this: 23 and 220 of 3,000 deliveries lost to a 5 s broker outage.
//
// orderedGroup closes that gap for every stage at the one place all their
// commits pass: the consumer-group session Goka is handed. It records the
// offsets each claim delivers, in order, and moves the committed offset
// only over a contiguous run of marked ones. A message that was never
// marked (failed, or cut short by shutdown or a rebalance) holds the
// partition's committed offset at itself, so whoever owns the partition
// next starts from it; the messages after it are processed again, which
// the deterministic IDs downstream make harmless.
type orderedGroup struct {
	sarama.ConsumerGroup
}

func (g orderedGroup) Consume(ctx context.Context, topics []string, h sarama.ConsumerGroupHandler) error {
	return g.ConsumerGroup.Consume(ctx, topics, &orderedHandler{h: h})
}

// orderedHandler hands Goka a wrapped session per generation.
type orderedHandler struct {
	h       sarama.ConsumerGroupHandler
	mu      sync.Mutex
	session *orderedSession
}

func (o *orderedHandler) wrap(s sarama.ConsumerGroupSession) *orderedSession {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.session == nil || o.session.ConsumerGroupSession != s {
		o.session = &orderedSession{ConsumerGroupSession: s, parts: map[topicPartition]*commitTracker{}}
	}
	return o.session
}

func (o *orderedHandler) Setup(s sarama.ConsumerGroupSession) error { return o.h.Setup(o.wrap(s)) }

func (o *orderedHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	err := o.h.Cleanup(o.wrap(s))
	o.mu.Lock()
	o.session = nil
	o.mu.Unlock()
	return err
}

func (o *orderedHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	os := o.wrap(s)
	t := os.tracker(claim.Topic(), claim.Partition())
	out := make(chan *sarama.ConsumerMessage)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(out)
		for msg := range claim.Messages() {
			// Recorded before Goka sees it: a message Goka never gets is
			// never marked, and nothing after it is committed.
			t.consumed(msg.Offset)
			select {
			case out <- msg:
			case <-stop:
				return
			case <-s.Context().Done():
				return
			}
		}
	}()
	return o.h.ConsumeClaim(os, orderedClaim{ConsumerGroupClaim: claim, msgs: out})
}

type orderedClaim struct {
	sarama.ConsumerGroupClaim
	msgs chan *sarama.ConsumerMessage
}

func (c orderedClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }

type topicPartition struct {
	topic     string
	partition int32
}

// orderedSession passes a mark on only when every earlier message of the
// partition has been marked too.
type orderedSession struct {
	sarama.ConsumerGroupSession
	mu    sync.Mutex
	parts map[topicPartition]*commitTracker
}

func (s *orderedSession) tracker(topic string, partition int32) *commitTracker {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := topicPartition{topic, partition}
	t := s.parts[k]
	if t == nil {
		t = &commitTracker{done: map[int64]bool{}}
		s.parts[k] = t
	}
	return t
}

// MarkOffset is how Goka commits: offset is the next one to consume.
func (s *orderedSession) MarkOffset(topic string, partition int32, offset int64, metadata string) {
	if next, ok := s.tracker(topic, partition).marked(offset - 1); ok {
		s.ConsumerGroupSession.MarkOffset(topic, partition, next, metadata)
	}
}

func (s *orderedSession) MarkMessage(msg *sarama.ConsumerMessage, metadata string) {
	s.MarkOffset(msg.Topic, msg.Partition, msg.Offset+1, metadata)
}

// commitTracker is one partition's consumed and marked offsets.
type commitTracker struct {
	mu sync.Mutex
	// pending are the consumed offsets above the committed one, ascending.
	pending []int64
	// done are marked offsets still behind an unmarked one.
	done map[int64]bool
}

func (t *commitTracker) consumed(off int64) {
	t.mu.Lock()
	t.pending = append(t.pending, off)
	t.mu.Unlock()
}

// marked records that off is done and returns the offset to commit (the
// one after the last of the contiguous run now done), if it moved.
func (t *commitTracker) marked(off int64) (next int64, moved bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) == 0 || off < t.pending[0] {
		// Not consumed through this session's claim (e.g. marked twice):
		// nothing to move.
		return 0, false
	}
	t.done[off] = true
	i := 0
	for i < len(t.pending) && t.done[t.pending[i]] {
		delete(t.done, t.pending[i])
		i++
	}
	if i == 0 {
		return 0, false
	}
	next = t.pending[i-1] + 1
	t.pending = t.pending[i:]
	return next, true
}
