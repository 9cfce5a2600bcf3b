package collector

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// TestParseEventsCorpus pins the exact reason for every kind of bad input.
func TestParseEventsCorpus(t *testing.T) {
	good := `{"event_id":"e1","member_id":"M1","type":"page_view","item_id":"I1","at":"2026-11-23T09:00:00Z"}`
	tests := []struct {
		name     string
		body     string
		accepted int
		rejects  []Reject
		err      string
	}{
		{name: "empty body", body: "", err: ErrEmptyBody.Error()},
		{name: "blank body", body: " \n\t\n", err: ErrEmptyBody.Error()},
		{name: "empty array", body: "[]", err: ErrEmptyBody.Error()},
		{name: "one good object", body: good, accepted: 1},
		{name: "array of two", body: "[" + good + "," + good + "]", accepted: 2},
		{name: "truncated array", body: "[" + good, err: "body: invalid JSON at byte 97: unexpected end of JSON input"},
		{name: "array with garbage", body: `[{"member_id":"M1"} x]`, err: "body: invalid JSON at byte 21: invalid character 'x' after array element"},
		{name: "invalid UTF-8 in array", body: "[{\"member_id\":\"M\xff\"}]", err: "body: invalid UTF-8 at byte 16"},
		{name: "wrong type for member_id", body: `[{"member_id":42,"type":"search"}]`,
			rejects: []Reject{{Index: 0, Error: "member_id: want string, got number"}}},
		{name: "wrong type for attrs", body: `{"member_id":"M1","type":"search","attrs":{"q":1}}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: "attrs: values must be strings, got number"}}},
		{name: "missing member_id", body: `{"type":"search"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: "missing member_id"}}},
		{name: "unknown type", body: `{"member_id":"M1","type":"teleport"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: `unknown type "teleport" (want one of page_view, add_to_cart, remove_from_cart, search, app_open, purchase)`}}},
		{name: "every problem at once", body: `{"type":"add_to_cart","at":"yesterday"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: `missing member_id; missing item_id; at "yesterday" is not an RFC 3339 time like 2026-11-23T10:00:00Z`}}},
		{name: "a click through the API", body: `{"member_id":"M1","type":"click","delivery_id":"D1"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: `type "click" ` + errTracked}}},
		{name: "far future", body: `{"member_id":"M1","type":"search","at":"2027-01-01T00:00:00Z"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: "at 2027-01-01T00:00:00Z is more than 24h0m0s in the future"}}},
		{name: "not an object", body: `[1, "x", null, []]`, rejects: []Reject{
			{Index: 0, Error: "event must be a JSON object, got number"},
			{Index: 1, Error: "event must be a JSON object, got string"},
			{Index: 2, Error: "event must be a JSON object, got null"},
			{Index: 3, Error: "event must be a JSON object, got array"}}},
		{name: "NDJSON with one bad line", body: good + "\n\n{\"member_id\":\"M2\",\"type\":\"search\"\n" + good + "\n",
			accepted: 2, rejects: []Reject{{Index: 1, Line: 3, Error: "invalid JSON at byte 33: unexpected end of JSON input"}}},
		{name: "NDJSON invalid UTF-8 line", body: good + "\n{\"member_id\":\"\xc3\x28\",\"type\":\"search\"}",
			accepted: 1, rejects: []Reject{{Index: 1, Line: 2, Error: "invalid UTF-8 at byte 14"}}},
		{name: "control characters", body: `{"member_id":"M\u0000","type":"search"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: "member_id contains control characters"}}},
		{name: "huge id", body: `{"member_id":"` + strings.Repeat("m", 200) + `","type":"search"}`,
			rejects: []Reject{{Index: 0, Line: 1, Error: "member_id is 200 bytes, at most 128"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, rejects, err := ParseEvents([]byte(tt.body), now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != tt.accepted {
				t.Errorf("accepted %d, want %d", len(evs), tt.accepted)
			}
			if len(rejects) != len(tt.rejects) {
				t.Fatalf("rejects = %+v, want %+v", rejects, tt.rejects)
			}
			for i := range rejects {
				if rejects[i] != tt.rejects[i] {
					t.Errorf("reject %d = %+v\nwant        %+v", i, rejects[i], tt.rejects[i])
				}
			}
		})
	}
}

func TestParseEventsFields(t *testing.T) {
	evs, _, err := ParseEvents([]byte(`{"member_id":"M1","type":"search","attrs":{"q":"boots"}}`), now)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	ev := evs[0]
	if !ev.At.Equal(now) || ev.Attrs["q"] != "boots" || !strings.HasPrefix(ev.EventID, "c-") {
		t.Errorf("event = %+v: want at=now, attrs kept, derived event_id", ev)
	}
	again, _, _ := ParseEvents([]byte(`{"member_id":"M1","type":"search","attrs":{"q":"boots"}}`), now)
	if again[0].EventID != ev.EventID {
		t.Error("derived event_id is not deterministic")
	}
	if err := ev.Validate(); err != nil {
		t.Error(err)
	}
	if !errors.Is(func() error { _, _, err := ParseEvents(nil, now); return err }(), ErrEmptyBody) {
		t.Error("nil body: want ErrEmptyBody")
	}
}
