// Package detect is the event-detection stage: it turns the shop's change
// rows into business events on `events` — price_drop, back_in_stock and
// new_item from items, order_shipped from orders, and cart_abandoned (a cart
// with no order within a window) from carts and orders, released by a timer.
//
// Event IDs derive from the source (table, key, change version; for
// cart_abandoned the member and the due time), so a replay or a retry
// produces the same IDs and downstream deduplication holds.
package detect

import (
	"time"

	"github.com/bytedance/sonic"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/timer"
)

// State is the value of detect-table. Items are keyed by item_id, members by
// member_id; one key holds only the part its topics write.
type State struct {
	Item   *ItemState   `json:"item,omitempty"`
	Member *MemberState `json:"member,omitempty"`
}

// ItemState is what detection needs to know about an item.
type ItemState struct {
	Version  int64   `json:"version"`
	Exists   bool    `json:"exists"`
	Price    float64 `json:"price"`
	Stock    int     `json:"stock"`
	Name     string  `json:"name,omitempty"`
	Brand    string  `json:"brand,omitempty"`
	Category string  `json:"category,omitempty"`
}

// MemberState is a member's cart and open orders.
type MemberState struct {
	// Versions is the last applied change version per row ("cart/<item>",
	// "order/<id>").
	Versions map[string]int64 `json:"versions,omitempty"`
	// Cart maps item → when it was added.
	Cart map[string]time.Time `json:"cart,omitempty"`
	// Orders maps an order → its last status.
	Orders map[string]string `json:"orders,omitempty"`
	// DueAt is when the cart counts as abandoned if no order came; zero when
	// no check is pending. It is indexed (DueIndex) for the timer.
	DueAt time.Time `json:"due_at,omitzero"`
	// LastOrderAt is the newest order time, to tell whether an order came
	// after the cart.
	LastOrderAt time.Time `json:"last_order_at,omitzero"`
}

func (m *MemberState) newer(row string, v int64) bool {
	if last, ok := m.Versions[row]; ok && v <= last {
		return false
	}
	if m.Versions == nil {
		m.Versions = map[string]int64{}
	}
	m.Versions[row] = v
	return true
}

// Codec is the detect-table codec.
type Codec = stage.TableCodec[State]

// DueIndex is the partition-local index due time → member of pending
// cart-abandonment checks.
const DueIndex = "due"

// IndexDue is the Indexer of DueIndex.
func IndexDue(_ string, value []byte) ([]string, error) {
	var s struct {
		Member *struct {
			DueAt time.Time `json:"due_at"`
		} `json:"member"`
	}
	if err := sonic.Unmarshal(value, &s); err != nil || s.Member == nil || s.Member.DueAt.IsZero() {
		return nil, nil
	}
	return []string{timer.DueKey(s.Member.DueAt)}, nil
}
