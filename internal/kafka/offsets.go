package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ListOffsets runs an offset listing (kadm's ListStartOffsets,
// ListEndOffsets, ListOffsetsAfterMilli) and retries it while it reports
// retriable errors, up to five times: a broker whose metadata is still
// catching up answers "unknown topic" for a moment, which a read-only tool
// (rtm explain, rtm report) should wait out rather than report.
func ListOffsets(ctx context.Context, fn func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
	for attempt := 1; ; attempt++ {
		l, err := fn()
		if err == nil {
			err = l.Error()
		}
		if err == nil || attempt == 5 || !kerr.IsRetriable(err) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}
