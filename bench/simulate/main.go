// Command simulate fills a broker with generated traffic for measuring
// `rtm simulate` end to end (reading included): members written straight
// to the member table's changelog, each favouriting a few items, and
// events on the events topic, alternating price drops of those items and
// abandoned carts. Apply the topics and publish rules first:
//
//	rtm broker --broker-addr 127.0.0.1:19092 --data-dir /tmp/simbench &
//	rtm topics apply --brokers 127.0.0.1:19092 --partitions 16 --replication 1
//	rtm rules publish --yes --no-simulate --brokers 127.0.0.1:19092 rules/examples/rtm-rules.xlsx
//	go run ./bench/simulate -brokers 127.0.0.1:19092 -members 100000 -events 200000 -candidate /tmp/debug-filter.xlsx
//	time rtm simulate --brokers 127.0.0.1:19092 --partitions 16 --from -1h rules/examples/rtm-rules.xlsx
//	time rtm simulate --brokers 127.0.0.1:19092 --partitions 16 --from -1h /tmp/debug-filter.xlsx
//
// The first candidate changes no table (every decision is the same under
// both rule sets); -candidate writes one that changes the filter table:
// the example rules with the debug-user row no longer excluding, so debug
// members (every fiftieth) gain messages and the filter decides each
// offer under both rule sets.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/rules/examples"
	"github.com/rtm-project/rtm/topics"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap server")
	members := flag.Int("members", 100000, "members to write")
	items := flag.Int("items", 20000, "items they favourite")
	favs := flag.Int("favourites", 5, "favourites per member")
	events := flag.Int("events", 200000, "events to write, over the last 30 minutes")
	candidate := flag.String("candidate", "", "also write a candidate workbook changing the filter table to this .xlsx file")
	flag.Parse()
	if *candidate != "" {
		// Filters!H9 is the exclude cell of the debug-user rule (row 9 of
		// the Filters sheet, as `rtm simulate` names it).
		b, err := examples.Edited(map[string]any{"Filters!H9": false})
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(*candidate, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100000))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	produce := func(topic, key string, v []byte, ts time.Time) {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: v, Timestamp: ts}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	now := time.Now().UTC()
	zones := []string{"Asia/Tokyo", "Etc/GMT-9", "America/Los_Angeles", "Europe/Paris"}
	prefs := []string{"東京都", "大阪府", "北海道", "福岡県"}
	for i := range *members {
		id := fmt.Sprintf("M%07d", i)
		p := &member.Profile{MemberID: id, Exists: true, Status: "active", Email: id + "@example.jp", MailOptIn: i%5 != 0,
			LineUserID: "U" + id, LineOptIn: i%2 == 0, IsDebug: i%50 == 0, Timezone: zones[i%len(zones)], Prefecture: prefs[i%len(prefs)],
			Birthday: fmt.Sprintf("%d-04-01", 1960+i%45), Favorites: map[string]time.Time{}}
		for k := range *favs {
			p.Favorites[fmt.Sprintf("I%06d", (i*7+k*13)%*items)] = now.Add(-24 * time.Hour)
		}
		v, err := member.Codec{}.Encode(p)
		if err != nil {
			log.Fatal(err)
		}
		produce(string(member.Table), id, v, now)
	}
	for i := range *events {
		at := now.Add(-30 * time.Minute).Add(time.Duration(i) * 30 * time.Minute / time.Duration(*events))
		var e topics.Event
		var key string
		if i%2 == 0 {
			key = fmt.Sprintf("I%06d", (i/2)%*items)
			e = topics.Event{EventID: fmt.Sprintf("items/%s/%d/price_drop", key, i), Type: "price_drop", Source: topics.CDCItems, ItemID: key,
				Brand: "b", Category: "キッチン", OldPrice: 5000, NewPrice: 3000, DropPct: 40, Stock: 3, At: at}
		} else {
			key = fmt.Sprintf("M%07d", (i*31)%*members)
			e = topics.Event{EventID: fmt.Sprintf("cart/%s/%d", key, i), Type: "cart_abandoned", Source: topics.CDCCartItems,
				MemberID: key, ItemID: "I000001", Items: []string{"I000001"}, At: at}
		}
		v, err := topics.EventCodec{}.Encode(&e)
		if err != nil {
			log.Fatal(err)
		}
		produce(topics.Events, key, v, at)
	}
	if err := cl.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %d members and %d events\n", *members, *events)
}
