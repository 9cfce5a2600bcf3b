package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRulesTestRendersEveryVariant: `rtm rules test` renders, for a
// campaign decision, the template's variant for each channel it has one
// for — looked up by (id, channel) as render does — with the scenario's
// event facts (stock included).
func TestRulesTestRendersEveryVariant(t *testing.T) {
	facts := filepath.Join(t.TempDir(), "facts.json")
	if err := os.WriteFile(facts, []byte(`[{"name": "back in stock", "event": {"type": "back_in_stock", "item_id": "I9", "brand": "無印良品", "stock": 7}}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newRulesTestCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"../../rules/examples/rtm-rules.xlsx", "--facts", facts})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, ch := range []string{"MAIL", "LINE", "PUSH", "INAPP"} {
		if !strings.Contains(got, `"template_id":"back-in-stock","channel":"`+ch+`"`) {
			t.Errorf("no back-in-stock variant for %s rendered:\n%s", ch, got)
		}
	}
	if !strings.Contains(got, "在庫わずか（7点）") {
		t.Errorf("stock not rendered:\n%s", got)
	}
}
