package timing

import "testing"

func TestDropLabelIsBounded(t *testing.T) {
	for reason, want := range map[string]string{
		ReasonCapDay:                      ReasonCapDay,
		ReasonExpired:                     ReasonExpired,
		"rule_error: unknown name foo":    "rule_error",
		"rule_error: another message 12":  "rule_error",
		"something a later version added": "other",
	} {
		if got := dropLabel(reason); got != want {
			t.Errorf("dropLabel(%q) = %q, want %q", reason, got, want)
		}
	}
}
