package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rtm-project/rtm/internal/localcluster"
	"github.com/rtm-project/rtm/topics"
)

// result is what the verifier found.
type result struct {
	expected, delivered, lost, duplicated, failed, overCap int
	lineAccepted, lineMembers, lineRepeats                 int
	line503                                                int
	lineMissing                                            int
	linePushNoResult                                       int
	channels                                               map[string]int
	poisonFound, poisonTotal, dlqOther                     int
	faults, restarts                                       int
	storeFailures, storesRestored                          int
	took                                                   time.Duration
	lostSample                                             []string
}

func verify(ctx context.Context, addr, sinkHTTP string, w workload, poison map[string]string, deadline time.Duration) (*result, error) {
	start := time.Now()
	r := &result{expected: w.members, poisonTotal: len(poison)}
	var sent map[string][]string
	for {
		var err error
		sent, r.channels, r.failed, err = readResults(ctx, addr)
		if err != nil {
			return nil, err
		}
		if len(sent) >= w.members || time.Since(start) > deadline {
			break
		}
		time.Sleep(time.Second)
	}
	r.took = time.Since(start)
	for i := range w.members {
		m := memberID(i)
		switch n := len(sent[m]); {
		case n == 0:
			r.lost++
			if len(r.lostSample) < 5 {
				r.lostSample = append(r.lostSample, m)
			}
		case n > 1:
			r.duplicated++
			r.delivered++
		default:
			r.delivered++
		}
		if len(sent[m]) > 1 { // the example day cap is 3, but one drop sends one offer
			r.overCap++
		}
	}
	// The LINE sink: every accepted push, keyed by retry key.
	resp, err := http.Get("http://" + sinkHTTP + "/sinks/line")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var pushes []struct {
		Header http.Header     `json:"header"`
		Body   json.RawMessage `json:"body"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pushes); err != nil {
		return nil, fmt.Errorf("reading the LINE sink: %w", err)
	}
	perUser := map[string]int{}
	for _, p := range pushes {
		var b struct {
			To string `json:"to"`
		}
		json.Unmarshal(p.Body, &b)
		perUser[b.To]++
	}
	r.lineAccepted, r.lineMembers = len(pushes), len(perUser)
	for i := range w.members {
		hasResult := false
		for _, id := range sent[memberID(i)] {
			if strings.HasSuffix(id, "|"+topics.ChannelLine) {
				hasResult = true
				if perUser[lineUser(i)] == 0 {
					r.lineMissing++
				}
			}
		}
		if !hasResult && perUser[lineUser(i)] > 0 {
			r.linePushNoResult++ // sent, but nothing recorded it: member-state never learns
		}
	}
	for _, n := range perUser {
		if n > 1 {
			r.lineRepeats += n - 1
		}
	}
	// Dead letters.
	dlq, err := localcluster.ReadAll(ctx, addr, topics.DLQ)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, rec := range dlq {
		var dl topics.DeadLetter
		if json.Unmarshal(rec.Value, &dl) != nil {
			r.dlqOther++
			continue
		}
		if _, ok := poison[dl.Key]; ok && dl.Reason != "" {
			found[dl.Key] = true
		} else {
			r.dlqOther++
		}
	}
	r.poisonFound = len(found)
	return r, nil
}

func (r *result) pass() bool {
	return r.lost == 0 && r.duplicated == 0 && r.overCap == 0 && r.failed == 0 && r.lineRepeats == 0 && r.lineMissing == 0 &&
		r.linePushNoResult == 0 &&
		r.poisonFound == r.poisonTotal && r.dlqOther == 0
}

func (r *result) print() bool {
	fmt.Println()
	fmt.Printf("| check | value |\n|---|---|\n")
	rows := [][2]any{
		{"members expected to be reached once", r.expected},
		{"members with a `sent` result", r.delivered},
		{"lost (no `sent` result)", r.lost},
		{"duplicated (more than one `sent` delivery)", r.duplicated},
		{"`failed` results", r.failed},
		{"over the day cap", r.overCap},
		{"LINE pushes accepted by the sink / distinct members", fmt.Sprintf("%d / %d", r.lineAccepted, r.lineMembers)},
		{"LINE members pushed more than once", r.lineRepeats},
		{"LINE `sent` results the sink never received", r.lineMissing},
		{"LINE pushes the sink received with no `sent` result", r.linePushNoResult},
		{"LINE requests answered 503 during the outage (after the refused connections)", r.line503},
		{"`sent` results by channel", fmt.Sprint(r.channels)},
		{"poison records in dlq with a reason", fmt.Sprintf("%d/%d", r.poisonFound, r.poisonTotal)},
		{"other records in dlq", r.dlqOther},
		{"faults injected", r.faults},
		{"processes that exited on their own (restarted)", r.restarts},
		{"store partitions failed by the faulty disk (logged)", r.storeFailures},
		{"store partitions discarded at start and restored from the changelog", r.storesRestored},
		{"time from the end of the faults to the last result", r.took.Round(time.Second)},
	}
	for _, row := range rows {
		fmt.Printf("| %v | %v |\n", row[0], row[1])
	}
	if len(r.lostSample) > 0 {
		fmt.Println("lost, e.g.:", strings.Join(r.lostSample, " "))
	}
	verdict := "PASS"
	if !r.pass() {
		verdict = "FAIL"
	}
	fmt.Printf("chaos: %s expected=%d delivered=%d lost=%d duplicated=%d over_cap=%d poison=%d/%d faults=%d\n",
		verdict, r.expected, r.delivered, r.lost, r.duplicated, r.overCap, r.poisonFound, r.poisonTotal, r.faults)
	return r.pass()
}

// readResults returns each member's distinct sent deliveries (as
// "delivery_id|channel"), the sent results by channel and the number of
// failed results.
func readResults(ctx context.Context, addr string) (map[string][]string, map[string]int, int, error) {
	recs, err := localcluster.ReadAll(ctx, addr, topics.DeliveryResults)
	if err != nil {
		return nil, nil, 0, err
	}
	sent := map[string][]string{}
	channels := map[string]int{}
	failed := 0
	for _, rec := range recs {
		var res topics.DeliveryResult
		if json.Unmarshal(rec.Value, &res) != nil {
			continue // the poison record
		}
		switch res.Status {
		case topics.StatusSent:
			if id := res.DeliveryID + "|" + res.Channel; !slices.Contains(sent[res.MemberID], id) {
				sent[res.MemberID] = append(sent[res.MemberID], id)
				channels[res.Channel]++
			}
		case topics.StatusFailed:
			failed++
		}
	}
	return sent, channels, failed, nil
}
