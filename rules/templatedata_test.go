package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"
)

// TestTemplateDataIsTheJSONRoundTrip: templates see exactly what a JSON
// round trip of the facts gives (the contract published templates were
// written against): every field of Facts filled by reflection, so a field
// added to Facts and not to templateData fails here, and the empty facts,
// whose nil maps and lists are JSON's null.
func TestTemplateDataIsTheJSONRoundTrip(t *testing.T) {
	var full Facts
	fill(reflect.ValueOf(&full).Elem(), new(int))
	for _, tc := range []struct {
		name  string
		facts *Facts
	}{
		{"every field set", &full},
		{"empty", &Facts{}},
		{"sample", SampleFacts()},
		{"empty lists and maps", &Facts{Event: Event{Attrs: map[string]string{}}, Member: Member{Reachable: []string{}, Segments: []string{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.facts)
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			got, err := templateData(tc.facts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("templateData:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}

// TestTemplateDataRefusesWhatJSONCannotCarry: a number JSON has no form
// for is an error, as it was when the data was a JSON round trip.
func TestTemplateDataRefusesWhatJSONCannotCarry(t *testing.T) {
	for _, f := range []Facts{
		{Event: Event{DropPct: math.NaN()}},
		{Event: Event{NewPrice: math.Inf(1)}},
		{Event: Event{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		if _, err := templateData(&f); err == nil {
			t.Errorf("templateData(%+v) succeeded", f.Event)
		}
	}
}

// fill sets every field under v to a value no other field has: strings,
// numbers and bools, times, string lists and string maps (the kinds Facts
// is made of; another kind fails the test, so that it is added here).
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 1, 0, 0, 0, *n, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int:
		v.SetInt(int64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0), n)
		fill(v.Index(1), n)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		panic(fmt.Sprintf("fill: a %s in Facts: add it here and to templateData", v.Type()))
	}
}
