package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// workload is the known input: members who all favourite one item (and
// some who do not), poison records, and one price drop.
type workload struct {
	members int
	zone    string
	version int64
}

const item = "CHAOS-I1"

func memberID(i int) string { return fmt.Sprintf("CH%06d", i) }

func lineUser(i int) string { return fmt.Sprintf("U%032x", i+1) }

func (w *workload) cdc(table, key string, keyCols map[string]any, op string, row any) *kgo.Record {
	w.version++
	rb, _ := json.Marshal(row)
	v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: op, Version: w.version, Key: keyCols, Row: rb, TS: time.Now().UTC()})
	if err != nil {
		panic(err)
	}
	return &kgo.Record{Topic: "cdc." + table, Key: []byte(key), Value: v}
}

func (w *workload) seed(ctx context.Context, cl *kgo.Client) error {
	var recs []*kgo.Record
	for i := range w.members {
		m := memberID(i)
		recs = append(recs, w.cdc("members", m, map[string]any{"member_id": m}, topics.OpInsert, topics.MemberRow{
			MemberID: m, LineUserID: lineUser(i), LineOptIn: true, Status: "active", Timezone: w.zone}))
		recs = append(recs, w.cdc("favorites", m, map[string]any{"member_id": m, "item_id": item}, topics.OpInsert,
			topics.FavoriteRow{MemberID: m, ItemID: item, CreatedAt: time.Now().UTC()}))
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func (w *workload) priceDrop(ctx context.Context, cl *kgo.Client) error {
	row := func(price float64) topics.ItemRow {
		return topics.ItemRow{ItemID: item, Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: price, Stock: 5}
	}
	return cl.ProduceSync(ctx,
		w.cdc("items", item, map[string]any{"item_id": item}, topics.OpInsert, row(5000)),
		w.cdc("items", item, map[string]any{"item_id": item}, topics.OpUpdate, row(2900))).FirstErr()
}

// poison writes one malformed record to every topic a stage reads and
// returns their keys.
func (w *workload) poison(ctx context.Context, cl *kgo.Client) (map[string]string, error) {
	inputs := []string{topics.CDCMembers, topics.CDCItems, topics.CDCFavorites, topics.CDCOrders, topics.BehaviorEvents,
		topics.Events, topics.AudienceRequests, topics.OffersCandidates, topics.OffersFiltered, topics.OffersRouted,
		topics.OffersReady, topics.Deliveries, topics.DeliveryResults, topics.InAppMessages}
	keys := map[string]string{}
	var recs []*kgo.Record
	for i, t := range inputs {
		k := fmt.Sprintf("POISON%02d", i)
		keys[k] = t
		recs = append(recs, &kgo.Record{Topic: t, Key: []byte(k), Value: []byte(`{"schema_version":1,"broken":`)})
	}
	return keys, cl.ProduceSync(ctx, recs...).FirstErr()
}
