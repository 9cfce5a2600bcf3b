package member

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// FuzzApplyCDC: whatever a change record holds once it decodes, applying
// it returns an error or a change, never panics; applying it again
// changes nothing (a replayed or duplicated record is idempotent); and the
// profile still round-trips through the table codec.
func FuzzApplyCDC(f *testing.F) {
	for _, s := range []string{
		`{"schema_version":1,"table":"members","op":"u","version":3,"key":{"member_id":"M1"},"row":{"member_id":"M1","email":"a@b","mail_opt_in":true,"segments":"vip,new"}}`,
		`{"schema_version":1,"table":"members","op":"d","version":4,"key":{"member_id":"M1"}}`,
		`{"schema_version":1,"table":"favorites","op":"i","version":5,"key":{"member_id":"M1","item_id":"I1"},"row":{"member_id":"M1","item_id":"I1","created_at":"2026-01-01T00:00:00Z"}}`,
		`{"schema_version":1,"table":"cart_items","op":"i","version":6,"key":{"member_id":"M1","item_id":"I1"},"row":{"member_id":"M1","item_id":"I1","quantity":2}}`,
		`{"schema_version":1,"table":"orders","op":"i","version":7,"key":{"member_id":"M1","order_id":"O1"},"row":{"member_id":"M1","order_id":"O1","total":1980}}`,
		`{"schema_version":1,"table":"favorites","op":"i","version":8,"key":{"member_id":"M1"},"row":{}}`,
		`{"schema_version":1,"table":"members","op":"u","version":-1,"key":{"member_id":1e300},"row":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := topics.CDCCodec{}.DecodeValue(data)
		if err != nil {
			return
		}
		p := &Profile{MemberID: "M1", Timezone: "Asia/Tokyo"}
		changed, err := p.ApplyCDC(r)
		if err != nil && changed {
			t.Fatalf("ApplyCDC changed the profile and failed: %v", err)
		}
		before, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("profile does not encode: %v", err)
		}
		if again, err := p.ApplyCDC(r); again || (changed && err != nil) {
			t.Fatalf("applying the same record twice changed the profile again (changed %v, err %v)", again, err)
		}
		after, _ := json.Marshal(p)
		if string(before) != string(after) {
			t.Fatalf("second apply changed the profile:\n%s\n%s", before, after)
		}
		var c Codec
		enc, err := c.Encode(p)
		if err != nil {
			t.Fatalf("Codec.Encode: %v", err)
		}
		dec, err := c.Decode(enc)
		if err != nil {
			t.Fatalf("Codec.Decode of an encoded profile: %v", err)
		}
		_ = dec.(*Profile).Facts(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
		if re, _ := c.Encode(dec); !reflect.DeepEqual(re, enc) {
			t.Fatalf("profile does not round-trip:\n%s\n%s", enc, re)
		}
	})
}
