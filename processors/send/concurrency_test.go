package send_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/topics"
)

// gate is a channel whose sends wait until it is opened, and which records
// how many were waiting at once, in all and per member, and in what order
// each member's deliveries arrived.
type gate struct {
	mu        sync.Mutex
	open      chan struct{}
	waiting   int
	most      int
	byMember  map[string]int
	mostOne   int // the most sends of one member in flight at once
	order     map[string][]string
	accepted  map[string]int
	reachedAt chan int // receives the number waiting after each arrival
}

func newGate() *gate {
	return &gate{open: make(chan struct{}), byMember: map[string]int{}, order: map[string][]string{},
		accepted: map[string]int{}, reachedAt: make(chan int, 1000)}
}

func (g *gate) Deliver(ctx context.Context, d *topics.Delivery) channels.Outcome {
	g.mu.Lock()
	g.waiting++
	g.byMember[d.MemberID]++
	g.most, g.mostOne = max(g.most, g.waiting), max(g.mostOne, g.byMember[d.MemberID])
	g.order[d.MemberID] = append(g.order[d.MemberID], d.DeliveryID)
	g.reachedAt <- g.waiting
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return channels.Outcome{Status: topics.StatusFailed, Attempts: 1, Err: ctx.Err()}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiting--
	g.byMember[d.MemberID]--
	g.accepted[d.DeliveryID]++
	return channels.Outcome{Status: topics.StatusSent, Attempts: 1}
}

// TestSendsOfAPartitionOverlap: deliveries to different members of one
// partition are with the channel at once, up to Concurrency; a member's
// own deliveries go one at a time and in order; a delivery ID that arrives
// again while its send is in flight is not sent twice; every delivery has
// one result.
func TestSendsOfAPartitionOverlap(t *testing.T) {
	cases := []struct {
		name        string
		concurrency int
		members     []string // one delivery each, in this order
		want        int      // sends in flight before the gate opens
	}{
		{"four members, room for four", 4, []string{"A", "B", "C", "D"}, 4},
		{"six members, room for four", 4, []string{"A", "B", "C", "D", "E", "F"}, 4},
		{"one at a time", 1, []string{"A", "B", "C"}, 1},
		{"one member, three deliveries", 4, []string{"A", "A", "A"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			deliver, results, _ := sendStage(t, g, send.Config{Concurrency: tc.concurrency})
			var ids []string
			for i, m := range tc.members {
				id := m + "-" + string(rune('1'+i))
				ids = append(ids, id)
				deliver(id, m, time.Time{})
			}
			deliver(ids[0], tc.members[0], time.Time{}) // the first again, while it is in flight
			// Wait until tc.want sends are held at the gate, then a moment
			// more: a stage that let through more than it may would show it.
			deadline := time.After(time.Minute)
			for n := 0; n < tc.want; {
				select {
				case n = <-g.reachedAt:
				case <-deadline:
					t.Fatalf("only %d sends reached the channel, want %d at once", n, tc.want)
				}
			}
			time.Sleep(200 * time.Millisecond)
			g.mu.Lock()
			if g.most != tc.want {
				t.Errorf("%d sends in flight at once, want %d", g.most, tc.want)
			}
			g.mu.Unlock()
			close(g.open)
			res := results(len(ids))
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, id := range ids {
				if r := res[id]; len(r) != 1 || r[0].Status != topics.StatusSent {
					t.Errorf("%s: results %+v, want one sent", id, r)
				}
				if g.accepted[id] != 1 {
					t.Errorf("%s accepted %d times, want once", id, g.accepted[id])
				}
			}
			if g.mostOne != 1 {
				t.Errorf("a member had %d sends in flight at once, want 1", g.mostOne)
			}
			for m, got := range g.order {
				var want []string
				for i, id := range ids {
					if tc.members[i] == m {
						want = append(want, id)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("member %s's deliveries reached the channel as %v, want %v", m, got, want)
				}
			}
		})
	}
}

// TestStopRecordsSendsInFlight: a stage stopped while its channel is still
// answering lets the sends finish within the grace and commits their input
// once their outcomes are on the loop topic; the stage that takes over
// records them (one result each) and sends nothing again.
func TestStopRecordsSendsInFlight(t *testing.T) {
	g := newGate()
	deliver, results, restart := sendStage(t, g, send.Config{Concurrency: 4, ShutdownGrace: time.Minute})
	deliver("A-1", "A", time.Time{})
	deliver("B-1", "B", time.Time{})
	for n := 0; n < 2; n = <-g.reachedAt {
	}
	go func() {
		time.Sleep(300 * time.Millisecond) // the stop is under way, the channel still answering
		close(g.open)
	}()
	restart(func() {})
	res := results(2)
	for _, id := range []string{"A-1", "B-1"} {
		if r := res[id]; len(r) != 1 || r[0].Status != topics.StatusSent {
			t.Errorf("%s: results %+v, want one sent", id, r)
		}
	}
	deliver("A-2", "A", time.Time{}) // after the settled ones, on the new stage
	results(3)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range []string{"A-1", "B-1", "A-2"} {
		if g.accepted[id] != 1 {
			t.Errorf("%s accepted %d times, want once", id, g.accepted[id])
		}
	}
}
