package console

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rtm-project/rtm/internal/explain"
	"github.com/rtm-project/rtm/rules"
)

// maxSince bounds how far back a lookup reads: the topics' retention is
// the real limit, this one keeps a lookup to one partition's recent past.
const maxSince = 30 * 24 * time.Hour

type memberData struct {
	Member, Since string
	Report        *explain.Report
	Error         string
}

// memberPage is `rtm explain --member M --since D` in the browser.
func (c *Console) memberPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := memberData{Member: strings.TrimSpace(q.Get("member")), Since: q.Get("since")}
	if d.Since == "" {
		d.Since = "24h"
	}
	if d.Member == "" {
		c.render(w, 0, s, "member", "Member lookup", "members", d)
		return
	}
	since, err := time.ParseDuration(d.Since)
	if err != nil || since <= 0 || since > maxSince {
		d.Error = "Since must be a duration such as 30m, 24h or 168h, at most 720h."
		c.render(w, http.StatusBadRequest, s, "member", "Member lookup", "members", d)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	// Each lookup has its own client: explain assigns the member's
	// partitions to it, which two lookups at once must not share.
	cl, err := c.cfg.NewClient()
	if err == nil {
		defer cl.Close()
		d.Report, err = explain.Member(ctx, cl, c.cfg.Partitions, d.Member, c.now().Add(-since))
	}
	if err != nil {
		d.Error = err.Error()
	}
	c.render(w, 0, s, "member", "Member "+d.Member, "members", d)
}

type campaignsData struct {
	Campaigns []string
	Campaign  string
	Report    string
	Error     string
}

// campaignsPage shows a campaign's results as the report function
// computes them; the campaigns offered are those the tables in force can
// fire.
func (c *Console) campaignsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	d := campaignsData{Campaign: strings.TrimSpace(r.URL.Query().Get("campaign"))}
	live, err := rules.List(ctx, c.pub)
	if err != nil {
		d.Error = err.Error()
	}
	d.Campaigns = campaignIDs(live)
	if d.Campaign != "" && err == nil {
		d.Report, err = c.cfg.Report(ctx, d.Campaign)
		if err != nil {
			d.Error = err.Error()
		}
	}
	c.render(w, 0, s, "campaigns", "Campaign results", "campaigns", d)
}

// campaignIDs are the campaign ids the campaign tables' rows set.
func campaignIDs(live map[string]rules.TableSpec) []string {
	ids := map[string]bool{}
	for _, t := range live {
		if t.Kind != rules.KindCampaign {
			continue
		}
		for i, col := range t.Columns {
			if col.Type != rules.ColAction || strings.TrimSpace(col.Template) != "campaign" {
				continue
			}
			for _, row := range t.Rows {
				if i < len(row.Cells) {
					if id, ok := row.Cells[i].V.(string); ok && id != "" {
						ids[id] = true
					}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(ids))
}
