package mssql

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeCheckpoint(t *testing.T) {
	tests := []struct {
		name, key, value string
		want             string // error substring; empty: valid
	}{
		{"older bridge", "items", `{"table":"items","version":12}`, ""},
		{"with identity", "items", `{"table":"items","version":12,"database":"6f1c0d2e-0000-4000-8000-000000000001","epoch":2}`, ""},
		{"resync", "favorites", `{"table":"favorites","version":3,"database":"d","epoch":1,"resync":{"reason":"r","base":9,"after":{"member_id":"M1","item_id":7}}}`, ""},
		{"sweep", "items", `{"table":"items","version":3,"database":"d","epoch":1,"resync":{"reason":"r","base":9,"sweep":true,"sweep_from":{"0":12}}}`, ""},
		{"key mismatch", "members", `{"table":"items","version":1}`, "does not match the record key"},
		{"negative version", "items", `{"table":"items","version":-2}`, "negative"},
		{"resync without epoch", "items", `{"table":"items","version":1,"resync":{"base":1}}`, "without an epoch"},
		{"nested resume key", "items", `{"table":"items","version":1,"epoch":1,"resync":{"base":1,"after":{"item_id":{"x":1}}}}`, "map[string]interface {} value"},
		{"null resume value", "items", `{"table":"items","version":1,"epoch":1,"resync":{"base":1,"after":{"item_id":null}}}`, "<nil> value"},
		{"negative sweep offset", "items", `{"table":"items","version":1,"epoch":1,"resync":{"base":1,"sweep_from":{"0":-1}}}`, "negative"},
		{"long identity", "items", `{"table":"items","version":1,"database":"` + strings.Repeat("x", 65) + `"}`, "database identity"},
		{"trailing", "items", `{"table":"items","version":1} {}`, "trailing"},
		{"not json", "items", `version=1`, "not a checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCheckpoint([]byte(tt.key), []byte(tt.value))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzDecodeCheckpoint: any record on cdc.checkpoints is either refused or
// decodes to a checkpoint that survives its own encoding unchanged (what
// the bridge writes back is what it read).
func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add([]byte("items"), []byte(`{"table":"items","version":12}`))
	f.Add([]byte("items"), []byte(`{"table":"items","version":3,"database":"d","epoch":1,"resync":{"reason":"r","base":9,"after":{"item_id":"I1"}}}`))
	f.Add([]byte("favorites"), []byte(`{"table":"favorites","version":3,"database":"d","epoch":4,"resync":{"reason":"r","base":9,"after":{"member_id":"M1","item_id":1.5e3},"sweep":true,"sweep_from":{"0":12,"3":4}}}`))
	f.Add([]byte("x"), []byte(`{"table":"x","version":-1,"resync":null}`))
	f.Add([]byte(""), []byte(`null`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		c, err := decodeCheckpoint(key, value)
		if err != nil {
			return
		}
		again, err := decodeCheckpoint(key, checkpointRecord(c).Value)
		if err != nil {
			t.Fatalf("re-encoded checkpoint %+v refused: %v", c, err)
		}
		if !reflect.DeepEqual(normal(c), normal(again)) {
			t.Fatalf("round trip changed %+v into %+v", c, again)
		}
	})
}

// normal makes empty and nil maps compare equal (omitempty drops both).
func normal(c Checkpoint) Checkpoint {
	if c.Resync != nil {
		r := *c.Resync
		if len(r.After) == 0 {
			r.After = nil
		}
		if len(r.SweepFrom) == 0 {
			r.SweepFrom = nil
		}
		c.Resync = &r
	}
	return c
}

// FuzzDecodeKeyRecord: a cdc.keys record is refused unless it names the
// table, holds exactly its primary-key columns and matches its record
// key; one accepted is one the bridge could have written.
func FuzzDecodeKeyRecord(f *testing.F) {
	favs := testTables()[1]
	ok := keySetRecord(favs, Change{Op: "i", Key: map[string]any{"member_id": "M1", "item_id": "I1"}}, 2)
	f.Add(ok.Key, ok.Value)
	f.Add([]byte("favorites\x00M1\x00I1"), []byte(`{"table":"favorites","key":{"member_id":"M1"},"epoch":1}`))
	f.Add([]byte("favorites\x005\x00I1"), []byte(`{"table":"favorites","key":{"member_id":5,"item_id":"I1"},"epoch":0}`))
	f.Add([]byte("items\x00I1"), []byte(`{"table":"items","key":{"item_id":"I1"},"epoch":1}`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		kr, err := decodeKeyRecord(favs, key, value)
		if err != nil {
			return
		}
		if kr.Table != favs.Name || len(kr.Key) != 2 || kr.Epoch < 0 {
			t.Fatalf("accepted %+v", kr)
		}
		r := keySetRecord(favs, Change{Op: "i", Key: kr.Key}, kr.Epoch)
		if string(r.Key) != string(key) {
			t.Fatalf("accepted record key %q, the bridge would write %q", key, r.Key)
		}
		var back KeyRecord
		if err := json.Unmarshal(r.Value, &back); err != nil {
			t.Fatal(err)
		}
	})
}
