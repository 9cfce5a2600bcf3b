package member

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// The apply functions change p in place and report whether anything
// changed (a stale or duplicate input changes nothing and is not written).

// newer records version v for row and reports whether v is newer than the
// last applied version of that row.
func (p *Profile) newer(row string, v int64) bool {
	if last, ok := p.Versions[row]; ok && v <= last {
		return false
	}
	if p.Versions == nil {
		p.Versions = map[string]int64{}
	}
	p.Versions[row] = v
	return true
}

// FirstMembersRow reports whether r is the first members row of the
// member this profile has seen: no members row, not even a deleted one,
// was applied before.
func (p *Profile) FirstMembersRow(r *topics.CDCRecord) bool {
	_, seen := p.Versions["members"]
	return r.Table == "members" && r.Op != topics.OpDelete && !seen
}

// ApplyCDC applies a change row of members, favorites, orders or cart_items.
func (p *Profile) ApplyCDC(r *topics.CDCRecord) (bool, error) {
	switch r.Table {
	case "members":
		if !p.newer("members", r.Version) {
			return false, nil
		}
		if r.Op == topics.OpDelete {
			*p = Profile{MemberID: p.MemberID, Versions: p.Versions}
			return true, nil
		}
		row, err := topics.DecodeRow[topics.MemberRow](r)
		if err != nil {
			return false, err
		}
		p.Exists = true
		p.Email, p.LineUserID, p.PushToken = row.Email, row.LineUserID, row.PushToken
		p.MailOptIn, p.LineOptIn, p.PushOptIn = row.MailOptIn, row.LineOptIn, row.PushOptIn
		p.Status, p.IsDebug, p.Gender, p.Birthday = row.Status, row.IsDebug, row.Gender, row.Birthday
		p.Prefecture, p.Timezone, p.RegisteredAt = row.Prefecture, row.Timezone, row.RegisteredAt
		p.Segments = parseSegments(row.Segments)
		p.applyOptOuts()
		return true, nil
	case "favorites":
		item := r.KeyString("item_id")
		if item == "" {
			return false, fmt.Errorf("favorites change without key item_id")
		}
		if !p.newer("fav/"+item, r.Version) {
			return false, nil
		}
		if r.Op == topics.OpDelete {
			delete(p.Favorites, item)
			return true, nil
		}
		row, err := topics.DecodeRow[topics.FavoriteRow](r)
		if err != nil {
			return false, err
		}
		if p.Favorites == nil {
			p.Favorites = map[string]time.Time{}
		}
		p.Favorites[item] = row.CreatedAt
		return true, nil
	case "cart_items":
		item := r.KeyString("item_id")
		if item == "" {
			return false, fmt.Errorf("cart_items change without key item_id")
		}
		if !p.newer("cart/"+item, r.Version) {
			return false, nil
		}
		if r.Op == topics.OpDelete {
			delete(p.Cart, item)
			return true, nil
		}
		row, err := topics.DecodeRow[topics.CartItemRow](r)
		if err != nil {
			return false, err
		}
		if p.Cart == nil {
			p.Cart = map[string]CartLine{}
		}
		p.Cart[item] = CartLine{Quantity: row.Quantity, AddedAt: row.AddedAt}
		return true, nil
	case "orders":
		id := r.KeyString("order_id")
		if id == "" {
			return false, fmt.Errorf("orders change without key order_id")
		}
		if !p.newer("order/"+id, r.Version) {
			return false, nil
		}
		i := p.orderIndex(id)
		if r.Op == topics.OpDelete {
			if i >= 0 {
				p.Orders = append(p.Orders[:i], p.Orders[i+1:]...)
			}
			return true, nil
		}
		row, err := topics.DecodeRow[topics.OrderRow](r)
		if err != nil {
			return false, err
		}
		o := Order{OrderID: id, ItemID: row.ItemID, Status: row.Status, Total: row.Total, At: row.OrderedAt}
		if i >= 0 {
			p.Orders[i] = o
		} else {
			// A new order: the version check above makes this count once.
			p.OrdersCount++
			p.Orders = append(p.Orders, o)
			if len(p.Orders) > maxOrders {
				p.Orders = p.Orders[len(p.Orders)-maxOrders:]
			}
		}
		if o.At.After(p.LastOrderAt) {
			p.LastOrderAt = o.At
		}
		return true, nil
	}
	return false, fmt.Errorf("member-state does not read table %q", r.Table)
}

func (p *Profile) orderIndex(id string) int {
	for i, o := range p.Orders {
		if o.OrderID == id {
			return i
		}
	}
	return -1
}

// ApplyBehavior applies a behaviour event: activity by local hour, opens and
// clicks as channel engagement, unsubscribes as opt-outs.
func (p *Profile) ApplyBehavior(e *topics.BehaviorEvent) bool {
	id := "b/" + e.EventID
	if p.seen(id) {
		return false
	}
	p.remember(id)
	p.Activity[e.At.In(p.Location()).Hour()]++
	switch e.Type {
	case "open", "click":
		ch := e.Attrs["channel"]
		if ch == "" {
			ch = p.channelOf(e.DeliveryID)
		}
		if ch != "" {
			p.engage(ch, e.At, func(g *Engagement) {
				if e.Type == "open" {
					g.Opened++
				} else {
					g.Clicked++
				}
			})
		}
	case "unsubscribe":
		chs := []string{e.Attrs["channel"]}
		if chs[0] == "" || chs[0] == "all" {
			chs = []string{topics.ChannelMail, topics.ChannelLine, topics.ChannelPush}
		}
		for _, ch := range chs {
			if flag := p.optIn(ch); flag != nil {
				*flag = false
				if p.OptOuts == nil {
					p.OptOuts = map[string]time.Time{}
				}
				p.OptOuts[ch] = e.At
			}
		}
	}
	return true
}

func (p *Profile) optIn(channel string) *bool {
	switch channel {
	case topics.ChannelMail:
		return &p.MailOptIn
	case topics.ChannelLine:
		return &p.LineOptIn
	case topics.ChannelPush:
		return &p.PushOptIn
	}
	return nil
}

// applyOptOuts keeps RTM-side unsubscribes in force over a members row:
// while the row still says opted in, the shop has not recorded the
// unsubscribe, so the channel stays off; once a row says opted out, the
// shop's data is authoritative again (and a later opt-in there is a real
// re-subscription).
func (p *Profile) applyOptOuts() {
	for ch := range p.OptOuts {
		flag := p.optIn(ch)
		if flag == nil || !*flag {
			delete(p.OptOuts, ch)
			continue
		}
		*flag = false
	}
}

// ApplyResult applies a delivery result: a sent delivery counts as a send on
// its channel and is remembered for frequency facts.
func (p *Profile) ApplyResult(r *topics.DeliveryResult) bool {
	id := "d/" + r.DeliveryID + "/" + r.Status
	if p.seen(id) || (r.Status == topics.StatusSent &&
		slices.ContainsFunc(p.RecentSends, func(s Send) bool { return s.DeliveryID == r.DeliveryID })) {
		return false
	}
	p.remember(id)
	if r.Status != topics.StatusSent {
		return true
	}
	p.engage(r.Channel, r.At, func(g *Engagement) { g.Sent++ })
	p.RecentSends = append(p.RecentSends, Send{DeliveryID: r.DeliveryID, CampaignID: r.CampaignID, Channel: r.Channel, At: r.At})
	cut := 0
	for cut < len(p.RecentSends) && (len(p.RecentSends)-cut > maxRecentSends || r.At.Sub(p.RecentSends[cut].At) > 7*24*time.Hour) {
		cut++
	}
	p.RecentSends = p.RecentSends[cut:]
	return true
}

func (p *Profile) channelOf(deliveryID string) string {
	for _, s := range p.RecentSends {
		if s.DeliveryID == deliveryID {
			return s.Channel
		}
	}
	return ""
}

// engage decays a channel's counts to at and applies f.
func (p *Profile) engage(channel string, at time.Time, f func(*Engagement)) {
	if p.Engagement == nil {
		p.Engagement = map[string]Engagement{}
	}
	g := p.Engagement[channel]
	g = g.decayed(at)
	f(&g)
	p.Engagement[channel] = g
}

// decayed returns g's counts as of at (never moving backwards in time).
func (g Engagement) decayed(at time.Time) Engagement {
	if g.At.IsZero() || !at.After(g.At) {
		if g.At.IsZero() {
			g.At = at
		}
		return g
	}
	f := math.Exp2(-float64(at.Sub(g.At)) / float64(engagementHalfLife))
	return Engagement{Sent: g.Sent * f, Opened: g.Opened * f, Clicked: g.Clicked * f, At: at}
}

// EngagementAt returns a channel's decayed counts as of now.
func (p *Profile) EngagementAt(channel string, now time.Time) Engagement {
	return p.Engagement[channel].decayed(now)
}

// parseSegments splits a members row's segments column: trimmed, without
// empties or repeats, sorted, so the same column always gives the same
// index entries.
func parseSegments(col string) []string {
	var out []string
	for _, s := range strings.Split(col, ",") {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
