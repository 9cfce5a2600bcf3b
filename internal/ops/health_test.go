package ops

import (
	"context"
	"testing"
)

func TestReadyOnlyWhenEveryComponentRuns(t *testing.T) {
	cases := []struct {
		name      string
		states    map[string]State
		ready     bool
		live      bool
		withProgr bool
	}{
		{"nothing registered", nil, false, true, false},
		{"one recovering", map[string]State{"filter": Recovering, "rules": Running}, false, true, true},
		{"one restarting", map[string]State{"filter": Restarting, "rules": Running}, false, true, false},
		{"all running", map[string]State{"filter": Running, "rules": Running}, true, true, false},
		{"one failed", map[string]State{"filter": Failed, "rules": Running}, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHealth(nil)
			defer h.Close()
			for n, s := range tc.states {
				h.Set(n, Status{State: s, LastError: "boom"})
				h.SetProgress(n, func(context.Context) *Progress { return &Progress{Restored: 5, Total: 10} })
			}
			rep := h.Ready(context.Background())
			if rep.Ready != tc.ready {
				t.Errorf("ready %v, want %v (%+v)", rep.Ready, tc.ready, rep)
			}
			if got := rep.Components["filter"].Progress != nil; got != tc.withProgr {
				t.Errorf("progress reported: %v, want %v (only while recovering)", got, tc.withProgr)
			}
			if live, why := h.Live(); live != tc.live {
				t.Errorf("live %v (%s), want %v", live, why, tc.live)
			}
		})
	}
}
