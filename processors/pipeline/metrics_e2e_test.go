package pipeline

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/lag"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/topics"
)

// gate is a Deliverer that holds every delivery until it is opened, then
// reports it sent.
type gate struct {
	open chan struct{}
	once sync.Once
}

func (g *gate) Deliver(ctx context.Context, d *topics.Delivery) channels.Outcome {
	select {
	case <-g.open:
		return channels.Outcome{Status: topics.StatusSent, Attempts: 1}
	case <-ctx.Done():
		return channels.Outcome{Status: topics.StatusFailed, Err: ctx.Err()}
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// TestMetricsAfterAPipelineRun runs every stage from change rows to the
// send stage on one registry, with the consumer-lag poller, and reads the
// registry as /metrics serves it: while the send stage is held up, its
// group lags on deliveries; once it is let go and everything has caught
// up, every lag series is 0; the end-to-end latency has one observation
// per delivery result on each channel used; and the per-stage latency,
// the rule versions and the stores' statistics are there.
func TestMetricsAfterAPipelineRun(t *testing.T) {
	rs := &swappable{}
	rs.p.Store(exampleRules(t))
	h := newHarness(t, rs)
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	g := &gate{open: make(chan struct{})}
	defer g.release() // before the stages stop (LIFO), so send can leave
	h.cfg.Deliverer = g
	names := append(slices.Clone(stagesOne), channel.Group, timing.Group, render.Group, send.Group)

	reg := prometheus.NewRegistry()
	if err := stage.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	poller := lag.New(h.client, names, time.Hour, testkit.Logger(t)) // polled by the test, not the ticker
	stores := stage.NewStoreCollector()
	reg.MustRegister(poller, stores, stage.RulesCollector{Rules: rs})
	for _, n := range names {
		h.start(n, "")
		stores.Track(n, h.built[n].Env.Registry)
	}
	results := h.collect(topics.DeliveryResults)
	before := endToEndCounts(t, reg)

	// 20 favouriters of I1 in a zone where it is noon (no quiet hours):
	// even ones read mail, odd ones LINE.
	const members = 20
	for i := range members {
		row := topics.MemberRow{MemberID: fmt.Sprintf("L%02d", i), Status: "active", Timezone: simulator.NoonZone()}
		if i%2 == 0 {
			row.Email, row.MailOptIn = fmt.Sprintf("l%d@example.jp", i), true
		} else {
			row.LineUserID, row.LineOptIn = fmt.Sprintf("U%d", i), true
		}
		h.member(row)
		h.favorite(row.MemberID, "I1")
	}
	h.waitIndexed("I1", members)
	h.waitProfilesBy(filter.Group, members)
	item := topics.ItemRow{ItemID: "I1", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: 5000, Stock: 3}
	h.item(topics.OpInsert, item)
	item.Price = 3000
	h.item(topics.OpUpdate, item)

	ctx := testkit.Context(t)
	testkit.Eventually(t, time.Minute, "the send stage's group lagging on deliveries", func() bool {
		if err := poller.Poll(ctx); err != nil {
			t.Logf("poll: %v", err)
			return false
		}
		n := lagOf(t, reg, send.Group, topics.Deliveries)
		if n > 0 {
			t.Logf("send lags by %v records on %s while held up", n, topics.Deliveries)
		}
		return n > 0
	})
	g.release()
	testkit.Eventually(t, time.Minute, "a result per member", func() bool { return results.len() >= members })
	h.caughtUp(append(names, "member-state")...) // delivery.results feed member-state last
	if err := poller.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	lags := gather(t, reg, "rtm_consumer_lag_records")
	if len(lags) == 0 {
		t.Fatal("no rtm_consumer_lag_records series after the run")
	}
	groups := map[string]bool{}
	for _, m := range lags {
		groups[label(m, "group")] = true
		if v := m.GetGauge().GetValue(); v != 0 {
			t.Errorf("after catching up, lag %v = %v, want 0", m.GetLabel(), v)
		}
	}
	for _, n := range names {
		if !groups[n] {
			t.Errorf("no lag series for group %s", n)
		}
	}

	perChannel := map[string]uint64{}
	for _, r := range results.recs {
		res, err := topics.DeliveryResultCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		perChannel[res.Channel]++
	}
	if len(perChannel) < 2 {
		t.Errorf("results on channels %v; the members read mail and LINE", perChannel)
	}
	after := endToEndCounts(t, reg)
	t.Logf("results by channel %v; end-to-end observations before %v, after %v", perChannel, before, after)
	for ch, n := range perChannel {
		key := "price_drop/" + ch
		if got := after[key] - before[key]; got != n {
			t.Errorf("end-to-end latency{campaign_kind=price_drop,channel=%s}: %d observations, want one per result (%d)", ch, got, n)
		}
	}
	for _, s := range []string{"detect", "campaign", "audience", "filter", channel.Group, timing.Group, render.Group, send.Group} {
		if histogramCount(t, reg, "rtm_stage_latency_seconds", "stage", s) == 0 {
			t.Errorf("no rtm_stage_latency_seconds observations for %s", s)
		}
	}
	versions := gather(t, reg, "rtm_rules_version_info")
	if want := len(rs.Current().Versions()); len(versions) != want {
		t.Errorf("%d rtm_rules_version_info series, want one per table in force (%d)", len(versions), want)
	}
	// Every open store has files on disk and a memtable.
	for _, name := range []string{"rtm_store_disk_usage_bytes", "rtm_store_memtable_bytes"} {
		n := 0
		for _, m := range gather(t, reg, name) {
			if label(m, "stage") == send.Group && m.GetGauge().GetValue() > 0 {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no %s of the send stage's stores", name)
		}
	}
	if len(gather(t, reg, "rtm_store_block_cache_hits_total")) != 1 {
		t.Error("no rtm_store_block_cache_hits_total")
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func lagOf(t *testing.T, reg *prometheus.Registry, group, topic string) float64 {
	sum := 0.0
	for _, m := range gather(t, reg, "rtm_consumer_lag_records") {
		if label(m, "group") == group && label(m, "topic") == topic {
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// endToEndCounts are the observation counts of the end-to-end latency by
// campaign_kind/channel: stage metrics are the process's, so a test
// compares before and after.
func endToEndCounts(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range gather(t, reg, "rtm_end_to_end_latency_seconds") {
		out[label(m, "campaign_kind")+"/"+label(m, "channel")] = m.GetHistogram().GetSampleCount()
	}
	return out
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, labelName, value string) uint64 {
	for _, m := range gather(t, reg, name) {
		if label(m, labelName) == value {
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}
