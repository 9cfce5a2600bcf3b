package stage

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// fillByTag sets every exported field of the struct *p to a distinct
// non-zero value and returns the values by json name.
func fillByTag(t *testing.T, p any) map[string]any {
	t.Helper()
	v := reflect.ValueOf(p).Elem()
	out := map[string]any{}
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		name := jsonName(sf)
		if name == "" || sf.Anonymous {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("v-" + name)
		case reflect.Int:
			f.SetInt(int64(7 + i))
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.25)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a-" + name, "b-" + name}))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"utm": "mail", "k-" + name: "v"}))
		case reflect.Struct:
			if f.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("fillByTag: cannot fill %s (%s)", sf.Name, f.Type())
			}
			f.Set(reflect.ValueOf(time.Date(2026, 12, 1, 9, 30, i, 0, time.UTC)))
		default:
			t.Fatalf("fillByTag: cannot fill %s (%s)", sf.Name, f.Type())
		}
		out[name] = f.Interface()
	}
	return out
}

func jsonName(sf reflect.StructField) string {
	tag := sf.Tag.Get("json")
	for i := range len(tag) {
		if tag[i] == ',' {
			return tag[:i]
		}
	}
	return tag
}

func valuesByTag(v any) map[string]any {
	rv := reflect.ValueOf(v)
	out := map[string]any{}
	for i := range rv.NumField() {
		out[jsonName(rv.Type().Field(i))] = rv.Field(i).Interface()
	}
	return out
}

// TestEventFactsAreComplete: every field rules.Event declares (what a
// condition or template can name as event.<name>) travels from the
// business event through the offer's summary — on the wire, as JSON — to
// the facts filter, channel, timing and render evaluate, unchanged. A field
// added to rules.Event without a way onto the offer fails here.
func TestEventFactsAreComplete(t *testing.T) {
	var e topics.Event
	sent := fillByTag(t, &e)
	sum := e.Summary()
	b, err := topics.OfferCodec{}.Encode(&topics.Offer{OfferID: "of-1", CampaignID: "c", MemberID: "M1", Event: sum})
	if err != nil {
		t.Fatal(err)
	}
	v, err := topics.OfferCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	o := v.(*topics.Offer)
	for _, facts := range []struct {
		name string
		ev   rules.Event
	}{
		{"campaign stage (from the summary it puts on offers)", EventFacts(&sum)},
		{"offer stages (from the decoded offer)", OfferFacts(o, rules.Member{}).Event},
	} {
		got := valuesByTag(facts.ev)
		for name, g := range got {
			want, ok := sent[name]
			if !ok {
				t.Errorf("%s: rules.Event has %s, which topics.Event lacks", facts.name, name)
				continue
			}
			if fmt.Sprint(g) != fmt.Sprint(want) || reflect.ValueOf(g).IsZero() {
				t.Errorf("%s: event.%s = %v, want %v", facts.name, name, g, want)
			}
		}
	}
	if o.Event.EventID != e.EventID {
		t.Errorf("event_id = %q, want %q", o.Event.EventID, e.EventID)
	}
	// The summary owns its attrs: changing the event's does not reach it.
	e.Attrs["utm"] = "line"
	if sum.Attrs["utm"] != "mail" {
		t.Error("the summary shares attrs with the event")
	}
}

// TestOfferFacts maps the offer's campaign fields and the member given.
func TestOfferFacts(t *testing.T) {
	o := &topics.Offer{CampaignID: "c1", Audience: "member", Priority: 5, Template: "tpl", Timing: "now",
		Event: topics.EventSummary{Type: "back_in_stock", Stock: 7}}
	f := OfferFacts(o, rules.Member{MemberID: "M1"})
	want := rules.Facts{Event: rules.Event{Type: "back_in_stock", Stock: 7}, Member: rules.Member{MemberID: "M1"},
		Campaign: rules.Campaign{ID: "c1", Audience: "member", Priority: 5, Template: "tpl", Timing: "now"}}
	if !reflect.DeepEqual(*f, want) {
		t.Fatalf("OfferFacts = %+v, want %+v", *f, want)
	}
}
