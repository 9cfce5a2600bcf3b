package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// workload is the known input: members, items each favourited by fans
// members of their own, and their price drops.
type workload struct {
	zone    string
	fans    int
	items   int
	mu      sync.Mutex
	version int64
}

func memberID(i int) string { return fmt.Sprintf("OPS%07d", i) }

func itemID(k int) string { return fmt.Sprintf("OPS-I%06d", k) }

func (w *workload) cdc(table, key string, keyCols map[string]any, op string, row any) *kgo.Record {
	w.mu.Lock()
	w.version++
	v := w.version
	w.mu.Unlock()
	rb, _ := json.Marshal(row)
	b, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: op, Version: v, Key: keyCols, Row: rb, TS: time.Now().UTC()})
	if err != nil {
		panic(err)
	}
	return &kgo.Record{Topic: "cdc." + table, Key: []byte(key), Value: b}
}

func (w *workload) member(i int) *kgo.Record {
	m := memberID(i)
	return w.cdc("members", m, map[string]any{"member_id": m}, topics.OpInsert, topics.MemberRow{
		MemberID: m, LineUserID: fmt.Sprintf("U%032x", i+1), LineOptIn: true, Status: "active", Timezone: w.zone})
}

// favourite makes member i a fan of item i/fans.
func (w *workload) favourite(i int) *kgo.Record {
	m := memberID(i)
	it := itemID(i / w.fans)
	return w.cdc("favorites", m, map[string]any{"member_id": m, "item_id": it}, topics.OpInsert,
		topics.FavoriteRow{MemberID: m, ItemID: it, CreatedAt: time.Now().UTC()})
}

// drop is item k's listing and its price drop.
func (w *workload) drop(k int) []*kgo.Record {
	it := itemID(k)
	row := func(price float64) topics.ItemRow {
		return topics.ItemRow{ItemID: it, Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: price, Stock: 5}
	}
	return []*kgo.Record{
		w.cdc("items", it, map[string]any{"item_id": it}, topics.OpInsert, row(5000)),
		w.cdc("items", it, map[string]any{"item_id": it}, topics.OpUpdate, row(2900)),
	}
}

// arrivals are the times records arrived.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func newArrivals() *arrivals { return &arrivals{} }

func (a *arrivals) add(t time.Time) {
	a.mu.Lock()
	a.at = append(a.at, t)
	a.mu.Unlock()
}

// longestGap is the longest time within [from, to] without an arrival
// (counting from from to the first and from the last to to).
func (a *arrivals) longestGap(from, to time.Time) time.Duration {
	a.mu.Lock()
	at := slices.Clone(a.at)
	a.mu.Unlock()
	prev, gap := from, time.Duration(0)
	for _, t := range at {
		if t.Before(from) {
			continue
		}
		if t.After(to) {
			break
		}
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return max(gap, to.Sub(prev))
}

// rate is arrivals per second within [from, to].
func (a *arrivals) rate(from, to time.Time) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, t := range a.at {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}
