package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rtm-project/rtm/internal/lag"
	"github.com/rtm-project/rtm/internal/ops"
)

// Readiness reports the readiness of the processes the console watches,
// one Instance per process.
type Readiness func(ctx context.Context) []Instance

// Instance is one process's /readyz answer (or why it could not be read).
type Instance struct {
	Source string
	Report ops.Report
	Err    error
}

// LocalReadiness reads the health of the process the console runs in
// (`rtm dev`).
func LocalReadiness(h *ops.Health) Readiness {
	return func(ctx context.Context) []Instance {
		return []Instance{{Source: "this process", Report: h.Ready(ctx)}}
	}
}

// HTTPReadiness reads GET <url>/readyz of every stage process, at once.
// /readyz answers 503 with the same JSON while a component is not
// running, so any status with a decodable body counts as an answer.
func HTTPReadiness(urls []string, client *http.Client) Readiness {
	if client == nil {
		client = &http.Client{Timeout: 3 * time.Second}
	}
	return func(ctx context.Context) []Instance {
		out := make([]Instance, len(urls))
		var wg sync.WaitGroup
		for i, u := range urls {
			wg.Go(func() {
				out[i] = Instance{Source: u}
				out[i].Report, out[i].Err = readyz(ctx, client, strings.TrimRight(u, "/")+"/readyz")
			})
		}
		wg.Wait()
		return out
	}
}

func readyz(ctx context.Context, client *http.Client, url string) (ops.Report, error) {
	var rep ops.Report
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return rep, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.Components == nil {
		return rep, fmt.Errorf("%s answered %s, not a readiness report", url, resp.Status)
	}
	return rep, nil
}

// samples keeps the last two lag readings: their difference is a rate.
type samples struct {
	mu         sync.Mutex
	prev, last sample
}

type sample struct {
	at     time.Time
	totals map[string]lag.Total
}

func (s *samples) add(at time.Time, totals map[string]lag.Total) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.IsZero() || !at.After(s.last.at) {
		return // no new answer since the last reading
	}
	s.prev, s.last = s.last, sample{at, totals}
}

func (s *samples) get() (prev, last sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prev, s.last
}

// stageRow is one component on the pipeline page.
type stageRow struct {
	Name      string
	Instances []instanceState
	// Lag and the rates are for consumer groups only; HasLag is false
	// for other components, or when the group could not be read.
	HasLag  bool
	Lag     int64
	HasRate bool
	InRate  float64 // records per second written to the group's input
	OutRate float64 // records per second the group committed
}

type instanceState struct {
	Source    string
	State     string
	Ready     bool
	Since     time.Time
	LastError string
	Progress  string
}

type pipelineData struct {
	Rows     []stageRow
	Errors   []string // sources that could not be read
	LagAt    time.Time
	RateOver time.Duration
	Interval time.Duration
}

func (c *Console) pipelinePage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	d := pipelineData{Interval: c.cfg.PollInterval}
	byName := map[string]*stageRow{}
	var order []string
	row := func(name string) *stageRow {
		if byName[name] == nil {
			byName[name] = &stageRow{Name: name}
			order = append(order, name)
		}
		return byName[name]
	}
	for _, g := range c.cfg.Groups {
		row(g)
	}
	for _, in := range c.cfg.Readiness(ctx) {
		if in.Err != nil {
			d.Errors = append(d.Errors, fmt.Sprintf("%s: %v", in.Source, in.Err))
			continue
		}
		names := make([]string, 0, len(in.Report.Components))
		for n := range in.Report.Components {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			st := in.Report.Components[n]
			is := instanceState{Source: in.Source, State: string(st.State), Ready: st.State == ops.Running, Since: st.Since, LastError: st.LastError}
			if p := st.Progress; p != nil {
				is.Progress = fmt.Sprintf("%d of %d records restored", p.Restored, p.Total)
			}
			rw := row(n)
			rw.Instances = append(rw.Instances, is)
		}
	}
	prev, last := c.samples.get()
	d.LagAt = last.at
	dt := last.at.Sub(prev.at)
	if !prev.at.IsZero() {
		d.RateOver = dt
	}
	for _, g := range c.cfg.Groups {
		rw := byName[g]
		t, ok := last.totals[g]
		if !ok {
			continue
		}
		rw.HasLag, rw.Lag = true, t.Lag
		if p, ok := prev.totals[g]; ok && dt > 0 && t.Partitions == p.Partitions {
			rw.HasRate = true
			rw.InRate = max(float64(t.End-p.End), 0) / dt.Seconds()
			rw.OutRate = max(float64(t.Committed-p.Committed), 0) / dt.Seconds()
		}
	}
	for _, n := range order {
		d.Rows = append(d.Rows, *byName[n])
	}
	c.render(w, 0, s, "pipeline", "Pipeline", "pipeline", d)
}
