package simulator

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// replyRates are the simulated open and click rates per channel: LINE is
// read most, mail least.
var replyRates = map[string]struct{ open, click float64 }{
	topics.ChannelLine:  {0.6, 0.2},
	topics.ChannelPush:  {0.4, 0.1},
	topics.ChannelInApp: {0.5, 0.15},
	topics.ChannelMail:  {0.3, 0.05},
}

// Reply makes the member of a sent delivery react like a shopper: an open,
// and sometimes a click, at the channel's rate. The draw is seeded by the
// delivery ID, so a replayed result gives the same reaction, and the events
// have IDs derived from it, so downstream counts them once. It is safe for
// concurrent use with the Shop (it shares nothing with it).
func Reply(ctx context.Context, sink EventSink, r topics.DeliveryResult, at time.Time) error {
	if sink == nil || r.Status != topics.StatusSent {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(r.DeliveryID))
	rnd := rand.New(rand.NewPCG(h.Sum64(), 0x5eed))
	rate := replyRates[r.Channel]
	if rnd.Float64() >= rate.open {
		return nil
	}
	ev := func(typ string, at time.Time) topics.BehaviorEvent {
		return topics.BehaviorEvent{EventID: "reply-" + typ + "-" + r.DeliveryID, MemberID: r.MemberID, Type: typ,
			DeliveryID: r.DeliveryID, At: at, Attrs: map[string]string{"channel": r.Channel, "campaign_id": r.CampaignID}}
	}
	if err := sink(ctx, ev("open", at)); err != nil {
		return err
	}
	if rnd.Float64() < rate.click/rate.open {
		return sink(ctx, ev("click", at.Add(5*time.Second)))
	}
	return nil
}
