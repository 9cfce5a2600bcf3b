package rules

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSpecJSONRoundTrip(t *testing.T) {
	for _, spec := range loadExamples(t) {
		b, err := MarshalSpec(&spec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"source_file":"rtm-rules.xlsx"`)) || bytes.Contains(b, []byte(`\u003c`)) {
			t.Errorf("%s: unexpected JSON %s", spec.Name, b)
		}
		back, err := UnmarshalSpec(b)
		if err != nil {
			t.Fatal(err)
		}
		if back.ContentHash() != spec.Meta.Version {
			t.Errorf("%s: hash changed across JSON: %s != %s", spec.Name, back.ContentHash(), spec.Meta.Version)
		}
		b2, _ := MarshalSpec(&back)
		if !bytes.Equal(b, b2) {
			t.Errorf("%s: JSON not stable:\n%s\n%s", spec.Name, b, b2)
		}
		tb, err := Compile(back)
		if err != nil {
			t.Fatalf("%s: compiling from JSON: %v", spec.Name, err)
		}
		if tb.Version() != spec.Meta.Version {
			t.Errorf("version %s, want %s", tb.Version(), spec.Meta.Version)
		}
	}
}

func TestVersionIsContentHash(t *testing.T) {
	spec := filterSpec(t, HitFirst, [][]any{{"a", "active", 1, true}})
	tb, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.Meta.Author, spec.Meta.SourceFile = "someone", "x.xlsx"
	if spec.ContentHash() != tb.Version() {
		t.Error("metadata changed the content hash")
	}
	spec.Rows[0].Cells[2] = Value{V: float64(2)}
	if spec.ContentHash() == tb.Version() {
		t.Error("content change kept the hash")
	}
	spec.Meta.Version = tb.Version() // stale
	_, err = Compile(spec)
	if err == nil || !errors.Is(err, ErrBadHeader) || !strings.Contains(err.Error(), "does not match the content hash") {
		t.Errorf("tampered spec: %v", err)
	}
}

func TestListCells(t *testing.T) {
	spec := TableSpec{Name: "l", Kind: KindFilter, Sheet: "L",
		Columns: []Column{
			{Type: ColCondition, Template: "member.prefecture in $param", Ref: "B5"},
			{Type: ColCondition, Template: "member.age in $param", Ref: "C5"},
			{Type: ColCondition, Template: "$param in member.segments", Ref: "D5"},
			{Type: ColAction, Template: "reason", Ref: "E5"},
		},
		Rows: []Row{
			{Row: 7, Cells: []Value{{"東京都、 大阪府，福岡県"}, {}, {}, {"pref"}}},
			{Row: 8, Cells: []Value{{}, {"20,30"}, {}, {"age"}}},
			{Row: 9, Cells: []Value{{}, {}, {"vip"}, {"seg"}}},
		}}
	tb, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		m    Member
		want string
	}{
		{Member{Prefecture: "福岡県"}, "pref"},
		{Member{Prefecture: "北海道", Age: 30}, "age"},
		{Member{Prefecture: "北海道", Age: 31, Segments: []string{"new", "vip"}}, "seg"},
		{Member{Prefecture: "北海道", Age: 31}, ""},
	} {
		d, ok, err := tb.Evaluate(&Facts{Member: tt.m})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if ok {
			got = d.Filter.Reason
		}
		if got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.m, got, tt.want)
		}
	}
	spec.Rows[1].Cells[1] = Value{"20,thirty"}
	_, err = Compile(spec)
	if want := `L!C8: condition "member.age in $param": list "20,thirty": want numbers`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}
