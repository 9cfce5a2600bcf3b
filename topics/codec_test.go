package topics

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	in := &DeliveryResult{DeliveryID: "d1", OfferID: "o1", MemberID: "M1", CampaignID: "c1",
		Channel: ChannelLine, Status: StatusSent, Attempts: 1, At: at}
	var c DeliveryResultCodec
	data, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema_version":1,"delivery_id":"d1","offer_id":"o1","member_id":"M1","campaign_id":"c1","channel":"LINE","status":"sent","attempts":1,"error":"","at":"2026-11-23T10:00:00Z"}`
	if string(data) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", data, want)
	}
	out, err := c.DecodeValue(data)
	if err != nil {
		t.Fatal(err)
	}
	if *out != *in {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
}

func TestCodecEncodesValuesAndRejectsOtherTypes(t *testing.T) {
	var c OfferCodec
	if _, err := c.Encode(Offer{OfferID: "o", CampaignID: "c", MemberID: "m"}); err != nil {
		t.Fatalf("value: %v", err)
	}
	if _, err := c.Encode(&Event{}); err == nil {
		t.Fatal("encoding an *Event with the offer codec succeeded")
	}
	if _, err := c.Encode((*Offer)(nil)); err == nil {
		t.Fatal("encoding a nil *Offer succeeded")
	}
}

func TestCodecDecodeErrors(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"empty", ``, "empty value"},
		{"not json", `hello`, "decoding CDCRecord"},
		{"truncated", `{"schema_version":1,"table":"items"`, "decoding CDCRecord"},
		{"wrong type", `{"schema_version":"1"}`, "decoding CDCRecord"},
		{"no version", `{"table":"items","op":"d","version":1,"key":{"item_id":"I1"}}`, "unsupported schema_version 0"},
		{"future version", `{"schema_version":2,"table":"items","op":"d","version":1,"key":{"item_id":"I1"}}`, "unsupported schema_version 2"},
		{"bad op", `{"schema_version":1,"table":"items","op":"x","version":1,"key":{"item_id":"I1"}}`, `op "x" is not one of i, u, d`},
		{"insert without row", `{"schema_version":1,"table":"items","op":"i","version":1,"key":{"item_id":"I1"},"row":null}`, `op "i" needs a row`},
		{"every problem", `{"schema_version":1,"op":"d","version":-1}`, "missing table\nversion -1 is negative\nmissing key"},
	}
	var c CDCCodec
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Decode([]byte(tc.in))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	_, err := c.Decode([]byte(`{"schema_version":7}`))
	if !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("errors.Is(%v, ErrSchemaVersion) = false", err)
	}
}

func TestCodecAcceptsUnknownFields(t *testing.T) {
	// A newer producer may add optional fields; older stages must keep working.
	in := `{"schema_version":1,"table":"items","op":"d","version":3,"key":{"item_id":"I1"},"added_later":true}`
	r, err := CDCCodec{}.DecodeValue([]byte(in))
	if err != nil || r.Version != 3 {
		t.Fatalf("got %+v, %v", r, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"schema_version":1}`, `[]`, `{"schema_version":1,"offer_id":"o","campaign_id":"c","member_id":"m","stamps":[{"stage":"x"}]}`, "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []interface{ Decode([]byte) (any, error) }{
			OfferCodec{}, CDCCodec{}, BehaviorEventCodec{}, EventCodec{}, DeliveryResultCodec{}, DeadLetterCodec{},
		} {
			v, err := c.Decode(data)
			if err == nil && v == nil {
				t.Fatal("nil value without error")
			}
		}
	})
}

func TestCDCIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, rec, want, err string
	}{
		{"row agrees", `{"table":"members","key":{"member_id":"M1"},"row":{"member_id":"M1"}}`, "M1", ""},
		{"delete carries only the key", `{"table":"members","key":{"member_id":"M1"},"row":null}`, "M1", ""},
		{"numeric key", `{"table":"members","key":{"member_id":42},"row":{"member_id":42}}`, "42", ""},
		{"row disagrees", `{"table":"members","key":{"member_id":"M1"},"row":{"member_id":"M2"}}`, "", `has a row with member_id="M2"`},
		{"no key column", `{"table":"orders","key":{"order_id":"O1"},"row":{"member_id":"M1"}}`, "", "without key column member_id"},
	} {
		var r CDCRecord
		if err := json.Unmarshal([]byte(tc.rec), &r); err != nil {
			t.Fatal(err)
		}
		got, err := r.Identity("member_id")
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: Identity = %q, %v; want %q, %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}
