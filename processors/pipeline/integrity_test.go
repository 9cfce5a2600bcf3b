package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/inbox"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/timer"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/topics"
)

// countingDeliverer sends nothing and counts what it was asked to send.
type countingDeliverer struct{ n atomic.Int64 }

func (c *countingDeliverer) Deliver(context.Context, *topics.Delivery) channels.Outcome {
	c.n.Add(1)
	return channels.Outcome{Status: topics.StatusSent, Attempts: 1}
}

// integrityInput is one input topic of the stages: who reads it, and a
// well-formed record about id.
type integrityInput struct {
	topic   string
	readers []string
	// victim is the key both bad records carry; attacker is whom the
	// mis-keyed record's content is about ("" when the value names no
	// identity: only its placement can be checked).
	victim, attacker string
	value            func(id string) any
	// miskeyed and misplaced are what the two dead letters' reasons say.
	miskeyed, misplaced string
}

// TestMiskeyedAndMisplacedRecordsGoToDLQ runs every stage and puts, on each
// of their input topics, a record keyed by a victim whose content is about
// an attacker, and a record about the victim on a partition other than its
// key's. Each reader dead-letters both with the reason, and nothing is
// applied: the victim's profile is byte for byte what it was, no stage
// table gains a row, nothing is emitted and nothing is sent.
func TestMiskeyedAndMisplacedRecordsGoToDLQ(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(exampleRules(t))
	h := newHarness(t, rs)
	dl := &countingDeliverer{}
	h.cfg.Deliverer = dl
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	all := Stages()
	for _, s := range all {
		h.start(s, "")
	}

	const victim, attacker = "MVICTIM", "MATTACK"
	h.member(topics.MemberRow{MemberID: victim, Email: "victim@example.jp", MailOptIn: true, Status: "active", Timezone: "UTC"})
	profile := func() []byte {
		var got []byte
		h.waitFor(memberstate.Group, "the victim's profile", func(v []byte) bool {
			var p member.Profile
			if json.Unmarshal(v, &p) == nil && p.MemberID == victim {
				got = bytes.Clone(v)
			}
			return got != nil
		})
		return got
	}
	before := profile()

	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	cdc := func(table string, extra map[string]any) func(string) any {
		return func(id string) any {
			key := map[string]any{"member_id": id}
			row := map[string]any{"member_id": id, "email": "attacker@evil.example", "mail_opt_in": true, "status": "active"}
			for k, v := range extra {
				key[k], row[k] = v, v
			}
			b, _ := json.Marshal(row)
			return &topics.CDCRecord{Table: table, Op: topics.OpUpdate, Version: 1 << 40, Key: key, Row: b, TS: at}
		}
	}
	offer := func(id string) any {
		return &topics.Offer{OfferID: "of-" + id, CampaignID: "price-drop-big", MemberID: id, Template: "t", Timing: "now", Channel: topics.ChannelMail}
	}
	tick := func(string) any { return &timer.Message{Kind: timer.Tick, At: at.Add(time.Hour)} }
	n := h.cfg.Catalogue.Partitions
	audKeys := topics.PartitionKeys("aud-", n)
	tickKey := topics.PartitionKeys("tick-", n)[0]
	keyed, placed, arrived := stage.ErrMiskeyed.Error(), stage.ErrMisplaced.Error(), "arrived on partition"
	inputs := []integrityInput{
		{topic: topics.CDCMembers, readers: []string{memberstate.Group}, value: cdc("members", nil)},
		{topic: topics.CDCFavorites, readers: []string{memberstate.Group}, value: cdc("favorites", map[string]any{"item_id": "I1"})},
		{topic: topics.CDCOrders, readers: []string{memberstate.Group, detect.Group}, value: cdc("orders", map[string]any{"order_id": "O1", "item_id": "I1"})},
		{topic: topics.CDCCartItems, readers: []string{memberstate.Group, detect.Group}, value: cdc("cart_items", map[string]any{"item_id": "I1", "quantity": 1})},
		{topic: topics.CDCItems, readers: []string{detect.Group}, victim: "IVICTIM", attacker: "IATTACK", value: func(id string) any {
			b, _ := json.Marshal(topics.ItemRow{ItemID: id, Price: 1, Stock: 5})
			return &topics.CDCRecord{Table: "items", Op: topics.OpUpdate, Version: 1 << 40, Key: map[string]any{"item_id": id}, Row: b, TS: at}
		}},
		{topic: topics.BehaviorEvents, readers: []string{memberstate.Group}, value: func(id string) any {
			return &topics.BehaviorEvent{EventID: "b-" + id, MemberID: id, Type: "unsubscribe", At: at}
		}},
		{topic: topics.DeliveryResults, readers: []string{memberstate.Group, timing.Group}, value: func(id string) any {
			return &topics.DeliveryResult{DeliveryID: "dl-" + id, OfferID: "of-" + id, MemberID: id, Channel: topics.ChannelMail, Status: topics.StatusFailed, At: at}
		}},
		{topic: topics.Events, readers: []string{campaign.Group}, value: func(id string) any {
			return &topics.Event{EventID: "ev-" + id, Type: "cart_abandoned", MemberID: id, ItemID: "I1", At: at}
		}},
		{topic: topics.AudienceRequests, readers: []string{audience.Group}, victim: audKeys[0], attacker: audKeys[1],
			miskeyed: arrived, misplaced: arrived, value: func(id string) any {
				return &topics.AudienceRequest{RequestID: "ar-1", Audience: topics.AudienceFavoritesOfItem, ItemID: "I1",
					Partition: topics.Partition([]byte(id), n), Offer: topics.Offer{CampaignID: "price-drop-big"}, At: at}
			}},
		{topic: topics.OffersCandidates, readers: []string{filter.Group}, value: offer},
		{topic: topics.OffersFiltered, readers: []string{channel.Group}, value: offer},
		{topic: topics.OffersRouted, readers: []string{timing.Group}, value: offer},
		{topic: topics.OffersReady, readers: []string{render.Group}, value: offer},
		{topic: topics.Deliveries, readers: []string{send.Group}, value: func(id string) any {
			return &topics.Delivery{DeliveryID: "dl-" + id, OfferID: "of-" + id, MemberID: id, Channel: topics.ChannelMail,
				Payload: json.RawMessage(`{}`), ExpiresAt: at.Add(1000 * time.Hour)}
		}},
		// An in-app message and a tick name no member: placement only.
		{topic: topics.InAppMessages, readers: []string{inbox.Group}, attacker: "-", value: func(id string) any {
			return &topics.InAppMessage{DeliveryID: "dl-" + id, Title: "t", At: at}
		}},
		{topic: topics.LoopOf(detect.Group), readers: []string{detect.Group}, victim: tickKey, attacker: "-", value: tick},
		{topic: topics.LoopOf(timing.Group), readers: []string{timing.Group}, victim: tickKey, attacker: "-", value: tick},
		{topic: topics.LoopOf(send.Group), readers: []string{send.Group}, victim: tickKey, attacker: "-", value: tick},
	}

	manual := testkit.Client(t, h.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produced := map[string]int{topics.CDCMembers: 1} // the victim's row
	for i := range inputs {
		in := &inputs[i]
		if in.victim == "" {
			in.victim = victim
		}
		if in.attacker == "" {
			in.attacker = attacker
		}
		if in.miskeyed == "" {
			in.miskeyed, in.misplaced = keyed, placed
		}
		home := topics.Partition([]byte(in.victim), n)
		put := func(key string, partition int32, v any) {
			encode := json.Marshal
			if tp, ok := h.cfg.Catalogue.Lookup(in.topic); ok && tp.Codec != nil {
				encode = tp.Codec.Encode // stamps the schema version
			}
			b, err := encode(v)
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Topic: in.topic, Key: []byte(key), Value: b, Partition: partition}
			if err := manual.ProduceSync(testkit.Context(t), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produced[in.topic]++
		}
		if in.attacker != "-" {
			put(in.victim, home, in.value(in.attacker))
		}
		put(in.victim, (home+1)%n, in.value(in.victim))
	}
	h.caughtUp(all...)

	type where struct{ stage, topic string }
	dead := map[where][]*topics.DeadLetter{}
	for _, r := range h.records(topics.DLQ) {
		v, err := topics.DeadLetterCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		dead[where{v.Stage, v.Topic}] = append(dead[where{v.Stage, v.Topic}], v)
	}
	for _, in := range inputs {
		for _, s := range in.readers {
			t.Run(s+"/"+in.topic, func(t *testing.T) {
				got := dead[where{s, in.topic}]
				want := []string{in.misplaced}
				if in.attacker != "-" {
					want = append(want, in.miskeyed)
				}
				if len(got) != len(want) {
					t.Fatalf("%d dead letters, want %d: %+v", len(got), len(want), got)
				}
				for _, reason := range want {
					found := false
					for _, dl := range got {
						found = found || (strings.Contains(dl.Reason, reason) && dl.Key == in.victim)
					}
					if !found {
						t.Errorf("no dead letter keyed %s says %q: %+v", in.victim, reason, got)
					}
				}
			})
		}
	}

	if after := profile(); !bytes.Equal(after, before) {
		t.Errorf("the victim's profile changed:\n before %s\n after  %s", before, after)
	}
	for _, tc := range []struct {
		stage, table string
		rows         int
	}{
		{memberstate.Group, string(member.Table), 1},
		{detect.Group, topics.TableOf(detect.Group), 0},
		{timing.Group, topics.TableOf(timing.Group), 0},
		{send.Group, topics.TableOf(send.Group), 0},
		{inbox.Group, topics.TableOf(inbox.Group), 0},
	} {
		rows := 0
		open := h.eachRow(tc.stage, tc.table, func([]byte) bool { rows++; return true })
		if !open || rows != tc.rows {
			t.Errorf("%s: %d rows in %s (every store open: %v), want %d", tc.stage, rows, tc.table, open, tc.rows)
		}
	}
	for _, tp := range []string{topics.Events, topics.AudienceRequests, topics.OffersCandidates, topics.OffersFiltered,
		topics.OffersRouted, topics.OffersReady, topics.OffersExcluded, topics.Deliveries, topics.DeliveryResults, topics.InAppMessages} {
		if got := len(h.records(tp)); got != produced[tp] {
			t.Errorf("%s: %d records, want only the %d the test produced", tp, got, produced[tp])
		}
	}
	if got := dl.n.Load(); got != 0 {
		t.Errorf("%d deliveries sent", got)
	}
}
