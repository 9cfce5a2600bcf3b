// Package jsoncodec compares JSON libraries on RTM's hottest message, the
// Offer, which every stage decodes and re-encodes. It is a separate module so
// that the losers never enter RTM's dependencies. Run: make bench-json.
package jsoncodec

import (
	stdjson "encoding/json"

	"testing"
	"time"

	"github.com/bytedance/sonic"
	gojson "github.com/goccy/go-json"
	jsoniter "github.com/json-iterator/go"
	segjson "github.com/segmentio/encoding/json"

	"github.com/rtm-project/rtm/topics"
)

func sampleOffer() *topics.Offer {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	return &topics.Offer{
		OfferID: "of-8c3f0a9d2b7e4f11", CampaignID: "price_drop_fav",
		RulesVersion: "sha256:4b2a9c", MemberID: "M000123456",
		Event: topics.EventSummary{EventID: "cdc.items/I000042/1234", Type: "price_drop", ItemID: "I000042",
			Brand: "ナチュラルライフ", Category: "kitchen", OldPrice: 3980, NewPrice: 2980, DropPct: 25.1, At: at},
		Priority: 10, Template: "price_drop_line", Timing: "now", ExpiresAt: at.Add(6 * time.Hour),
		Decisions: []topics.Decision{
			{Stage: "campaign", Table: "Campaigns", Rule: "PriceDrop20", Outcome: "fire"},
			{Stage: "filter", Table: "Exclusions", Outcome: "pass"},
		},
		Stamps: []topics.StageTime{{Stage: "detect", At: at}, {Stage: "campaign", At: at}, {Stage: "audience", At: at}},
	}
}

type lib struct {
	name      string
	marshal   func(any) ([]byte, error)
	unmarshal func([]byte, any) error
}

var libs = []lib{
	{"encoding-json", stdjson.Marshal, stdjson.Unmarshal},
	{"goccy-go-json", gojson.Marshal, gojson.Unmarshal},
	{"sonic", sonic.Marshal, sonic.Unmarshal},
	{"segmentio", segjson.Marshal, segjson.Unmarshal},
	{"jsoniter", jsoniter.ConfigCompatibleWithStandardLibrary.Marshal, jsoniter.ConfigCompatibleWithStandardLibrary.Unmarshal},
}

func TestLibrariesAgree(t *testing.T) {
	want, _ := stdjson.Marshal(sampleOffer())
	for _, l := range libs {
		var o topics.Offer
		if err := l.unmarshal(want, &o); err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		got, err := stdjson.Marshal(&o)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s decode differs:\n%s\n%s", l.name, got, want)
		}
		// Encoders must honour omitzero and produce the standard library's bytes.
		o.ExpiresAt = time.Time{}
		std, _ := stdjson.Marshal(&o)
		if enc, err := l.marshal(&o); err != nil || string(enc) != string(std) {
			t.Errorf("%s encoding differs from encoding/json:\n%s\n%s", l.name, enc, std)
		}
	}
}

// BenchmarkRoundTrip decodes and re-encodes an offer, as a stage does.
func BenchmarkRoundTrip(b *testing.B) {
	data, _ := stdjson.Marshal(sampleOffer())
	for _, l := range libs {
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var o topics.Offer
				if err := l.unmarshal(data, &o); err != nil {
					b.Fatal(err)
				}
				o.Stamps = append(o.Stamps, topics.StageTime{Stage: "filter"})
				if _, err := l.marshal(&o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
