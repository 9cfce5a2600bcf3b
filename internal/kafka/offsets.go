package kafka

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReaderOpts are the connection settings of a caller's client (seeds,
// TLS, SASL, client ID) without its producer, consumer or group settings:
// a reader built from them assigns partitions itself, joins no group,
// commits nothing and can produce nothing, so reading never interferes
// with the caller's transactional producer or group.
func ReaderOpts(cl *kgo.Client) []kgo.Opt {
	var out []kgo.Opt
	for _, o := range cl.Opts() {
		switch o.(type) {
		case kgo.ProducerOpt, kgo.ConsumerOpt, kgo.GroupOpt:
			continue
		}
		out = append(out, o)
	}
	return out
}

// Retry calls fn until it succeeds or fails for a reason that is not
// retriable, at most five times: a broker whose metadata is still catching
// up answers "unknown topic or partition" for a moment, which a read-only
// tool (rtm explain, rtm report, rtm simulate) should wait out rather than
// report.
func Retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil || attempt == 5 || !kerr.IsRetriable(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// ListOffsets runs an offset listing (kadm's ListStartOffsets,
// ListEndOffsets, ListOffsetsAfterMilli) with Retry, counting the
// listing's per-partition errors as its own.
func ListOffsets(ctx context.Context, fn func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
	return Retry(ctx, func() (kadm.ListedOffsets, error) {
		l, err := fn()
		if err == nil {
			err = l.Error()
		}
		return l, err
	})
}

// Scan reads the given partitions of each topic from the first offset at
// or after since to the end offsets as of the call, and passes every
// record to fn. It returns how many records it read. It is how the
// read-only tools (rtm explain: one member's partitions; rtm report: every
// partition) read a stretch of history: cl's partitions are added for
// the read and removed after it, so cl must consume nothing else
// meanwhile.
func Scan(ctx context.Context, cl *kgo.Client, parts map[string][]int32, since time.Time, fn func(*kgo.Record)) (int, error) {
	names := slices.Sorted(maps.Keys(parts))
	adm := kadm.NewClient(cl)
	starts, err := ListOffsets(ctx, func() (kadm.ListedOffsets, error) {
		return adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), names...)
	})
	if err != nil {
		return 0, fmt.Errorf("listing offsets after %s: %w", since.Format(time.RFC3339), err)
	}
	ends, err := ListOffsets(ctx, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, names...) })
	if err != nil {
		return 0, fmt.Errorf("listing end offsets: %w", err)
	}
	assign := map[string]map[int32]kgo.Offset{}
	want := map[topicPartition]int64{} // end offset still to reach
	for _, t := range names {
		for _, p := range parts[t] {
			s, ok := starts.Lookup(t, p)
			e, ok2 := ends.Lookup(t, p)
			if !ok || !ok2 {
				return 0, fmt.Errorf("topic %s has no partition %d: is --partitions the cluster's?", t, p)
			}
			if err := cmp.Or(s.Err, e.Err); err != nil {
				return 0, fmt.Errorf("offsets of %s/%d: %w", t, p, err)
			}
			if s.Offset < 0 || s.Offset >= e.Offset {
				continue // nothing since
			}
			if assign[t] == nil {
				assign[t] = map[int32]kgo.Offset{}
			}
			assign[t][p] = kgo.NewOffset().At(s.Offset)
			want[topicPartition{t, p}] = e.Offset
		}
	}
	if len(assign) == 0 {
		return 0, nil
	}
	cl.AddConsumePartitions(assign)
	defer cl.RemoveConsumePartitions(topicsOf(assign))
	n := 0
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("reading %s: %w", strings.Join(slices.Sorted(maps.Keys(assign)), ", "), err)
		}
		for _, fe := range fs.Errors() {
			return n, fmt.Errorf("reading %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			tp := topicPartition{r.Topic, r.Partition}
			if end, ok := want[tp]; ok && r.Offset+1 >= end {
				delete(want, tp)
			}
			fn(r)
		})
	}
	return n, nil
}

type topicPartition struct {
	topic     string
	partition int32
}

func topicsOf(m map[string]map[int32]kgo.Offset) map[string][]int32 {
	out := map[string][]int32{}
	for t, ps := range m {
		for p := range ps {
			out[t] = append(out[t], p)
		}
	}
	return out
}
