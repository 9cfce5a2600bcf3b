package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestProbe: rtm probe is the compose healthcheck, so it must exit
// non-zero on anything but a 2xx answer and on no answer at all.
func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, `{"filter":"recovering"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"ready":true}`))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{srv.URL + "/readyz", true},
		{srv.URL + "/other", false},
		{"http://127.0.0.1:1/readyz", false},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{"probe", tc.url})
		err := root.ExecuteContext(context.Background())
		if (err == nil) != tc.ok {
			t.Errorf("rtm probe %s: err %v, want ok=%v", tc.url, err, tc.ok)
		}
		if tc.ok && out.String() != `{"ready":true}` {
			t.Errorf("rtm probe printed %q", out.String())
		}
	}
}
