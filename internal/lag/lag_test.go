package lag

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
)

// TestPollerReportsLagAndDropsUnknownGroups: a group that committed 2 of
// 5 records lags by 3; after committing all, by 0; a group the cluster
// has never seen has no series.
func TestPollerReportsLagAndDropsUnknownGroups(t *testing.T) {
	b := testkit.Broker(t, "")
	cl := testkit.Client(t, b.Addr(), kgo.DefaultProduceTopic("in"))
	adm := kadm.NewClient(cl)
	ctx := testkit.Context(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "in"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(at int64) {
		os := make(kadm.Offsets)
		os.Add(kadm.Offset{Topic: "in", Partition: 0, At: at, LeaderEpoch: -1})
		if _, err := adm.CommitOffsets(ctx, "g", os); err != nil {
			t.Fatal(err)
		}
	}
	p := New(cl, []string{"g", "never-seen"}, 0, testkit.Logger(t))
	reg := prometheus.NewRegistry()
	reg.MustRegister(p)
	for _, tc := range []struct {
		commit int64
		want   float64
	}{{2, 3}, {5, 0}} {
		commit(tc.commit)
		if err := p.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := testutil.CollectAndCount(p, "rtm_consumer_lag_records"); n != 1 {
			t.Fatalf("%d series, want 1 (none for a group the cluster does not know)", n)
		}
		mfs, _ := reg.Gather()
		got := mfs[0].GetMetric()[0]
		if got.GetGauge().GetValue() != tc.want {
			t.Errorf("committed %d of 5: lag %v = %v, want %v", tc.commit, got.GetLabel(), got.GetGauge().GetValue(), tc.want)
		}
		at, totals := p.Totals()
		want := Total{Lag: int64(tc.want), End: 5, Committed: tc.commit, Partitions: 1}
		if at.IsZero() || len(totals) != 1 || totals["g"] != want {
			t.Errorf("committed %d of 5: Totals() = %v, %v; want g: %+v and a poll time", tc.commit, at, totals, want)
		}
	}
}

// TestPollerLeavesTheGroupsSliceAlone: the caller's list of groups (the
// stages a process runs, in order) is not reordered by a poll.
func TestPollerLeavesTheGroupsSliceAlone(t *testing.T) {
	b := testkit.Broker(t, "")
	groups := []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9"}
	want := slices.Clone(groups)
	p := New(testkit.Client(t, b.Addr()), groups, 0, testkit.Logger(t))
	for range 3 {
		p.Poll(context.Background()) // unknown groups: an answer without them
	}
	if !slices.Equal(groups, want) {
		t.Errorf("groups after polling: %v, want %v", groups, want)
	}
}
