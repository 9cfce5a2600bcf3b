package simulator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

func TestReplyIsDeterministicAndFollowsRates(t *testing.T) {
	count := func(ch string) (opens, clicks int) {
		for i := range 2000 {
			var got []topics.BehaviorEvent
			sink := func(_ context.Context, ev topics.BehaviorEvent) error { got = append(got, ev); return nil }
			r := topics.DeliveryResult{DeliveryID: fmt.Sprintf("d%d", i), MemberID: "M1", Channel: ch, Status: topics.StatusSent}
			if err := Reply(context.Background(), sink, r, time.Unix(0, 0)); err != nil {
				t.Fatal(err)
			}
			var again []topics.BehaviorEvent
			Reply(context.Background(), func(_ context.Context, ev topics.BehaviorEvent) error { again = append(again, ev); return nil }, r, time.Unix(0, 0))
			if len(again) != len(got) {
				t.Fatalf("delivery %s: %d then %d events", r.DeliveryID, len(got), len(again))
			}
			for _, ev := range got {
				if ev.Attrs["channel"] != ch || ev.DeliveryID != r.DeliveryID {
					t.Fatalf("event %+v", ev)
				}
				if ev.Type == "open" {
					opens++
				} else {
					clicks++
				}
			}
		}
		return opens, clicks
	}
	lineOpens, lineClicks := count(topics.ChannelLine)
	mailOpens, mailClicks := count(topics.ChannelMail)
	if !(lineOpens > mailOpens && lineClicks > mailClicks && lineClicks < lineOpens) {
		t.Fatalf("LINE %d/%d, MAIL %d/%d: LINE must be opened and clicked more", lineOpens, lineClicks, mailOpens, mailClicks)
	}
	// Failed deliveries get no reaction.
	n := 0
	Reply(context.Background(), func(context.Context, topics.BehaviorEvent) error { n++; return nil },
		topics.DeliveryResult{DeliveryID: "x", Channel: topics.ChannelLine, Status: topics.StatusFailed}, time.Now())
	if n != 0 {
		t.Fatal("a failed delivery was answered")
	}
}
