package mssql

import (
	"fmt"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/testkit"
)

// BenchmarkBridge measures change rows per second from the in-memory source
// through the bridge's transactions into the embedded broker:
//
//	go test ./connectors/mssql -run '^$' -bench Bridge -benchtime 50000x
func BenchmarkBridge(b *testing.B) {
	for _, maxRows := range []int{500, 5000} {
		b.Run(fmt.Sprintf("max_rows=%d", maxRows), func(b *testing.B) {
			e := newEnv(b)
			cfg := e.config()
			cfg.MaxRows = maxRows
			cfg.PollInterval = time.Millisecond
			br, _, _ := e.start(b, cfg, nil, nil)
			waitStarted(b, br)
			b.ResetTimer()
			for i := 0; i < b.N; {
				err := e.src.Txn(func(w Writer) error {
					for j := 0; j < 100 && i < b.N; j++ {
						if err := w.Insert("favorites", fav(fmt.Sprintf("M%d", i%10000), fmt.Sprintf("I%d", i))); err != nil {
							return err
						}
						i++
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			v := e.src.CurrentVersion()
			testkit.Eventually(b, 5*time.Minute, "bridge to catch up", func() bool { return br.Checkpoints()["favorites"] == v })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
