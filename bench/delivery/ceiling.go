package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"

	"github.com/rtm-project/rtm/internal/benchkit"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// The ceiling: the same topology — the same hops between the same groups
// over topics of the same partitions, the same Goka and sarama settings
// (stage.Env: hasher, ordered commits, producer) and messages of the size
// RTM's offers have — with pass-through processors that keep no state,
// evaluate no rules and do no I/O. Each hop re-emits what it consumed to
// the next topic; the audience hop fans one request out into the
// favouriters on its own partition (found by hashing, not by an index).
// RTM's throughput as a fraction of the ceiling's says how much of the
// time goes to RTM's own work rather than to Kafka and Goka.

// ceilingHops are RTM's stages on the throughput path, in order: each
// reads the topic named by its position and writes the next one's.
var ceilingHops = []string{"detect", "campaign", "audience", "filter", "channel", "timing", "render", "send"}

func ceilingTopic(i int) string { return fmt.Sprintf("ceiling.hop%d", i) }

// runCeiling runs the pass-through topology for nFavs deliveries of
// payload bytes each and returns its makespan (trigger → last record of
// the last topic) and the CPU the process used meanwhile.
func runCeiling(ctx context.Context, be *benchkit.Env, parts int32, nFavs, payload int, member func(int) string) (wall, cpu time.Duration, err error) {
	names := make([]string, len(ceilingHops)+1)
	for i := range names {
		names[i] = ceilingTopic(i)
	}
	if _, err := be.Admin.CreateTopics(ctx, parts, 1, nil, names...); err != nil {
		return 0, 0, err
	}
	body := make([]byte, payload)
	for i := range body {
		body[i] = 'x'
	}
	reqKeys := topics.PartitionKeys("req-", parts)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var procs []*goka.Processor
	for i, hop := range ceilingHops {
		in, out := goka.Stream(ceilingTopic(i)), goka.Stream(ceilingTopic(i+1))
		pass := func(ctx goka.Context, msg any) { ctx.Emit(out, ctx.Key(), body) }
		switch hop {
		case "campaign": // one audience request per partition
			pass = func(ctx goka.Context, msg any) {
				for _, k := range reqKeys {
					ctx.Emit(out, k, []byte(strconv.Itoa(nFavs)))
				}
			}
		case "audience": // this partition's favouriters
			pass = func(ctx goka.Context, msg any) {
				p := ctx.Partition()
				for m := range nFavs {
					if k := member(m); topics.Partition([]byte(k), parts) == p {
						ctx.Emit(out, k, body)
					}
				}
			}
		}
		env, err := stage.NewEnv(stage.EnvConfig{Kafka: kafka.Config{Brokers: be.Brokers}, Catalogue: be.Catalogue,
			DataDir: be.Dir, Group: "ceiling-" + hop, Log: be.Log})
		if err != nil {
			return 0, 0, err
		}
		g := goka.DefineGroup(goka.Group("ceiling-"+hop), goka.Input(in, new(codec.Bytes), pass), goka.Output(out, new(codec.Bytes)))
		p, err := goka.NewProcessor(be.Brokers, g, env.ProcessorOptions()...)
		if err != nil {
			return 0, 0, err
		}
		go p.Run(ctx)
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.WaitForReadyContext(ctx); err != nil {
			return 0, 0, err
		}
	}
	results := newCounter(ctx, be.Brokers, ceilingTopic(len(ceilingHops)))
	start, phase := time.Now(), benchkit.StartPhase()
	if err := be.Client.ProduceSync(ctx, kgoRecord(ceilingTopic(0), "I-HOT", body)).FirstErr(); err != nil {
		return 0, 0, err
	}
	last := results.waitFor(ctx, nFavs)
	cpu, _, _ = phase.Cost()
	return last.Sub(start), cpu, nil
}
