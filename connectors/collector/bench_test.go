package collector

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkCollector measures events per second through POST /v1/events
// into the embedded broker, acknowledged by Kafka, in requests of 100
// NDJSON events:
//
//	go test ./connectors/collector -run '^$' -bench Collector -benchtime 200x
func BenchmarkCollector(b *testing.B) {
	const perRequest = 100
	_, srv, _ := newCollector(b, Config{RatePerSecond: -1})
	var sb strings.Builder
	for i := range perRequest {
		fmt.Fprintf(&sb, `{"member_id":"M%d","type":"page_view","item_id":"I%d","attrs":{"ref":"bench"}}`+"\n", i, i)
	}
	body := sb.String()
	b.ResetTimer()
	for b.Loop() {
		resp, r := post(b, srv, body)
		if resp.StatusCode != http.StatusAccepted || r.Accepted != perRequest {
			b.Fatalf("status %d, %+v", resp.StatusCode, r)
		}
	}
	b.ReportMetric(float64(b.N*perRequest)/b.Elapsed().Seconds(), "events/s")
}
