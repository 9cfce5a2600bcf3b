package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestConfirm: only y or yes (any case, spaces around) publishes; anything
// else, an empty line or no answer at all does not.
func TestConfirm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{{"y\n", true}, {" YES \n", true}, {"Yes", true}, {"n\n", false}, {"\n", false}, {"", false}, {"yep\n", false}} {
		var out bytes.Buffer
		got, err := confirm(strings.NewReader(tc.in), &out, 2)
		if err != nil || got != tc.want || !strings.Contains(out.String(), "publish 2 changed table(s)? [y/N]") {
			t.Errorf("answer %q: %v, %v, prompt %q; want %v", tc.in, got, err, out.String(), tc.want)
		}
	}
}

// TestSimulateWindow: --from is a negative duration from now or an RFC
// 3339 time; anything else is refused with the flag's name.
func TestSimulateWindow(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		from string
		want time.Time
		err  bool
	}{
		{"-24h", now.Add(-24 * time.Hour), false},
		{"-90m", now.Add(-90 * time.Minute), false},
		{"2026-12-04T00:00:00+09:00", time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC), false},
		{"24h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	} {
		f := simulateFlags{from: tc.from}
		got, err := f.window(now)
		if (err != nil) != tc.err || !got.Equal(tc.want) || (err != nil && !strings.Contains(err.Error(), "--from")) {
			t.Errorf("--from %s: %v, %v; want %v (error %v)", tc.from, got, err, tc.want, tc.err)
		}
	}
}
