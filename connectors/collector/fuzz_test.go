package collector

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseEvents: any body parses without panicking, every event is either
// accepted (and then valid) or rejected with a reason, and accepted events
// have valid UTF-8 fields.
//
//	go test ./connectors/collector -run '^$' -fuzz FuzzParseEvents -fuzztime 60s -fuzzminimizetime 100x -parallel 1
//
// (bounding minimisation keeps a loaded machine fuzzing instead of minimising
// every new input for up to a minute)
func FuzzParseEvents(f *testing.F) {
	for _, s := range []string{
		`[{"event_id":"e1","member_id":"M1","type":"page_view","item_id":"I1","at":"2026-11-23T09:00:00Z"}]`,
		`{"member_id":"M1","type":"click","delivery_id":"D1"}` + "\n" + `{"member_id":1}`,
		`[1,null,"x",[],{}]`, "", "\xff\xfe", `{"attrs":{"a":"b"},"member_id":"M","type":"search"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, rejects, err := ParseEvents(body, now)
		if err != nil && (len(evs) > 0 || len(rejects) > 0) {
			t.Fatalf("body-level error %v with events or rejects", err)
		}
		if err == nil && Count(body) != len(evs)+len(rejects) {
			t.Fatalf("Count = %d, parsed %d + %d", Count(body), len(evs), len(rejects))
		}
		for _, ev := range evs {
			if err := ev.Validate(); err != nil {
				t.Fatalf("accepted an invalid event %+v: %v", ev, err)
			}
			if !utf8.ValidString(ev.MemberID) || !utf8.ValidString(ev.EventID) {
				t.Fatalf("accepted invalid UTF-8: %+v", ev)
			}
		}
		for _, r := range rejects {
			if r.Error == "" {
				t.Fatalf("reject without a reason: %+v", r)
			}
		}
	})
}
