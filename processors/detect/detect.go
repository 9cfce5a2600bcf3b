package detect

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// Event types detect emits.
const (
	PriceDrop     = "price_drop"
	BackInStock   = "back_in_stock"
	NewItem       = "new_item"
	OrderShipped  = "order_shipped"
	CartAbandoned = "cart_abandoned"
)

// Types lists the event types detect emits: the only values metrics label
// events with (see Kind).
var Types = []string{PriceDrop, BackInStock, NewItem, OrderShipped, CartAbandoned}

// KindOther labels events of a type detect does not emit (written to
// `events` by something else).
const KindOther = "other"

// Kind is t as a metric label: one of Types, or KindOther, so a producer
// inventing types cannot grow a metric's series.
func Kind(t string) string {
	if slices.Contains(Types, t) {
		return t
	}
	return KindOther
}

func sourceID(r *topics.CDCRecord, key string) string {
	return fmt.Sprintf("%s/%s/%d", r.Table, key, r.Version)
}

// ApplyItem applies an items change and returns the events it means. A
// change whose version is not newer than the last applied one is ignored.
func ApplyItem(s *ItemState, r *topics.CDCRecord) ([]topics.Event, bool, error) {
	if s.Version > 0 && r.Version <= s.Version {
		return nil, false, nil
	}
	itemID := r.KeyString("item_id")
	if r.Op == topics.OpDelete {
		*s = ItemState{Version: r.Version}
		return nil, true, nil
	}
	row, err := topics.DecodeRow[topics.ItemRow](r)
	if err != nil {
		return nil, false, err
	}
	ev := func(typ string) topics.Event {
		return topics.Event{
			EventID: sourceID(r, itemID) + "/" + typ, Type: typ, Source: r.Table, ItemID: itemID,
			Brand: row.Brand, Category: row.Category, NewPrice: row.Price, Stock: row.Stock, At: r.TS,
			Attrs: map[string]string{"name": row.Name, "url": row.URL, "image_url": row.ImageURL},
		}
	}
	var out []topics.Event
	if !s.Exists {
		out = append(out, ev(NewItem))
	} else {
		if row.Price > 0 && s.Price > 0 && row.Price < s.Price {
			e := ev(PriceDrop)
			e.OldPrice = s.Price
			e.DropPct = math.Round((s.Price-row.Price)/s.Price*1000) / 10
			out = append(out, e)
		}
		if s.Stock <= 0 && row.Stock > 0 {
			out = append(out, ev(BackInStock))
		}
	}
	*s = ItemState{Version: r.Version, Exists: true, Price: row.Price, Stock: row.Stock,
		Name: row.Name, Brand: row.Brand, Category: row.Category}
	return out, true, nil
}

// ApplyCart applies a cart_items change: adding an item (re)arms the
// abandonment check window after the newest addition; an emptied cart
// disarms it.
func ApplyCart(m *MemberState, r *topics.CDCRecord, window time.Duration) (bool, error) {
	item := r.KeyString("item_id")
	if item == "" {
		return false, fmt.Errorf("cart_items change without key item_id")
	}
	if !m.newer("cart/"+item, r.Version) {
		return false, nil
	}
	if r.Op == topics.OpDelete {
		delete(m.Cart, item)
	} else {
		row, err := topics.DecodeRow[topics.CartItemRow](r)
		if err != nil {
			return false, err
		}
		if m.Cart == nil {
			m.Cart = map[string]time.Time{}
		}
		m.Cart[item] = row.AddedAt
	}
	m.rearm(window)
	return true, nil
}

// rearm sets the abandonment check to window after the newest cart item
// added since the last order, or disarms it when there is none.
func (m *MemberState) rearm(window time.Duration) {
	m.DueAt = time.Time{}
	for _, added := range m.Cart {
		if due := added.Add(window); added.After(m.LastOrderAt) && due.After(m.DueAt) {
			m.DueAt = due
		}
	}
}

// ApplyOrder applies an orders change: an order placed after the cart's
// items disarms the abandonment check, and a status change to shipped is an
// event.
func ApplyOrder(m *MemberState, r *topics.CDCRecord, window time.Duration) ([]topics.Event, bool, error) {
	id := r.KeyString("order_id")
	if id == "" {
		return nil, false, fmt.Errorf("orders change without key order_id")
	}
	if !m.newer("order/"+id, r.Version) {
		return nil, false, nil
	}
	if r.Op == topics.OpDelete {
		delete(m.Orders, id)
		return nil, true, nil
	}
	row, err := topics.DecodeRow[topics.OrderRow](r)
	if err != nil {
		return nil, false, err
	}
	if row.OrderedAt.After(m.LastOrderAt) {
		m.LastOrderAt = row.OrderedAt
		m.rearm(window)
	}
	var out []topics.Event
	prev, known := m.Orders[id]
	if row.Status == "shipped" && (!known || prev != "shipped") {
		out = append(out, topics.Event{
			EventID: sourceID(r, id) + "/" + OrderShipped, Type: OrderShipped, Source: r.Table,
			MemberID: row.MemberID, ItemID: row.ItemID, At: r.TS, Attrs: map[string]string{"order_id": id},
		})
	}
	// Final statuses are kept too: a later update of a shipped order (say,
	// its total) must not look like a new shipment.
	if m.Orders == nil {
		m.Orders = map[string]string{}
	}
	m.Orders[id] = row.Status
	return out, true, nil
}

// Release fires a due abandonment check: if the cart still holds items added
// after the last order, it is a cart_abandoned event. The check is disarmed
// either way, so a second release (a duplicate tick) does nothing.
func Release(m *MemberState, member string, now time.Time) (*topics.Event, bool) {
	if m == nil || m.DueAt.IsZero() || m.DueAt.After(now) {
		return nil, false
	}
	due := m.DueAt
	m.DueAt = time.Time{}
	var items []string
	for item, added := range m.Cart {
		if added.After(m.LastOrderAt) {
			items = append(items, item)
		}
	}
	if len(items) == 0 {
		return nil, true
	}
	slices.Sort(items)
	return &topics.Event{
		EventID: fmt.Sprintf("cart/%s/%d/%s", member, due.UnixNano(), CartAbandoned), Type: CartAbandoned,
		Source: topics.CDCCartItems, MemberID: member, ItemID: items[0], Items: items, At: due,
	}, true
}
