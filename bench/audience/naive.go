package main

import (
	"context"
	"fmt"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// The naive design: the favouriters of an item are one list under the item
// key, so the request for that item lands on one partition and that one
// partition expands the whole list. To favour it, the list is held in
// memory (no table read, no decoding of a 100,000-entry value); what is
// measured is the expansion in one partition against lookups in all.

const naiveTopic = "bench.naive.requests"

type naiveAudience struct {
	list []string
}

func newNaive(env stage.Env, nFavs int) (*goka.Processor, error) {
	n := &naiveAudience{}
	for i := range nFavs {
		n.list = append(n.list, fmt.Sprintf("M%08d", i))
	}
	g := goka.DefineGroup("naive-audience",
		goka.Input(goka.Stream(naiveTopic), stage.Raw, n.request),
		goka.Output(goka.Stream(topics.OffersCandidates), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
	return goka.NewProcessor(env.Brokers, g, env.ProcessorOptions()...)
}

func (n *naiveAudience) request(ctx goka.Context, msg any) {
	req, ok := stage.Decode(ctx, "naive-audience", topics.AudienceRequestCodec{}, msg)
	if !ok {
		return
	}
	for _, m := range n.list {
		o := req.Offer
		o.MemberID = m
		o.OfferID = topics.OfferID(o.CampaignID, o.Event.EventID, m)
		ctx.Emit(goka.Stream(topics.OffersCandidates), m, &o)
	}
}

func naiveRequest(ctx context.Context, cl *kgo.Client, _ int) error {
	v, err := topics.AudienceRequestCodec{}.Encode(&topics.AudienceRequest{
		RequestID: "naive", Audience: topics.AudienceFavoritesOfItem, ItemID: hotItem,
		Offer: topics.Offer{CampaignID: "naive", RulesVersion: "bench", Event: topics.EventSummary{EventID: "naive-event", Type: "price_drop", ItemID: hotItem}},
	})
	if err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: naiveTopic, Key: []byte(hotItem), Value: v}).FirstErr()
}

// localRequest emits the audience request RTM's campaign stage would: one
// copy per partition, keyed to land on it.
func localRequest(ctx context.Context, cl *kgo.Client, parts int32) error {
	for p, key := range topics.PartitionKeys("aud-", parts) {
		v, err := topics.AudienceRequestCodec{}.Encode(&topics.AudienceRequest{
			RequestID: "local-direct", Audience: topics.AudienceFavoritesOfItem, ItemID: hotItem, Partition: int32(p),
			Offer: topics.Offer{CampaignID: "local-direct", RulesVersion: "bench", Event: topics.EventSummary{EventID: "local-event", Type: "price_drop", ItemID: hotItem}},
		})
		if err != nil {
			return err
		}
		cl.Produce(ctx, &kgo.Record{Topic: topics.AudienceRequests, Key: []byte(key), Value: v}, nil)
	}
	return cl.Flush(ctx)
}
