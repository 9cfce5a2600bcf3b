package topics

import (
	"fmt"
	"time"
)

// Row types of the shop's tables as they appear in CDCRecord.Row. The CDC
// bridge writes every tracked column; stages decode the row of the table
// they read with DecodeRow. Column names are the SQL Server column names.

// MemberRow is dbo.members.
type MemberRow struct {
	MemberID     string    `json:"member_id"`
	Email        string    `json:"email"`
	LineUserID   string    `json:"line_user_id"`
	PushToken    string    `json:"push_token"`
	MailOptIn    bool      `json:"mail_opt_in"`
	LineOptIn    bool      `json:"line_opt_in"`
	PushOptIn    bool      `json:"push_opt_in"`
	Status       string    `json:"status"` // active or withdrawn
	IsDebug      bool      `json:"is_debug"`
	Gender       string    `json:"gender"`
	Birthday     string    `json:"birthday"` // YYYY-MM-DD
	Prefecture   string    `json:"prefecture"`
	Timezone     string    `json:"timezone"` // IANA, e.g. Asia/Tokyo
	RegisteredAt time.Time `json:"registered_at"`
	// Segments are the shop's segments the member is in, comma-separated
	// (e.g. "vip,newsletter"), as the column stores them.
	Segments string `json:"segments,omitempty"`
}

// ItemRow is dbo.items.
type ItemRow struct {
	ItemID   string  `json:"item_id"`
	Name     string  `json:"name"`
	Brand    string  `json:"brand"`
	Category string  `json:"category"`
	Price    float64 `json:"price"`
	Stock    int     `json:"stock"`
	URL      string  `json:"url"`
	ImageURL string  `json:"image_url"`
}

// FavoriteRow is dbo.favorites, primary key (member_id, item_id).
type FavoriteRow struct {
	MemberID  string    `json:"member_id"`
	ItemID    string    `json:"item_id"`
	CreatedAt time.Time `json:"created_at"`
}

// OrderRow is dbo.orders.
type OrderRow struct {
	OrderID   string    `json:"order_id"`
	MemberID  string    `json:"member_id"`
	ItemID    string    `json:"item_id"`
	Status    string    `json:"status"` // e.g. placed, shipped, cancelled
	Total     float64   `json:"total"`
	OrderedAt time.Time `json:"ordered_at"`
}

// CartItemRow is dbo.cart_items, primary key (member_id, item_id).
type CartItemRow struct {
	MemberID string    `json:"member_id"`
	ItemID   string    `json:"item_id"`
	Quantity int       `json:"quantity"`
	AddedAt  time.Time `json:"added_at"`
}

// DecodeRow decodes a CDC row into one of the row types.
func DecodeRow[T any](r *CDCRecord) (*T, error) {
	var row T
	if err := jsonAPI.Unmarshal(r.Row, &row); err != nil {
		return nil, &DecodeError{Type: "row of " + r.Table, Err: err}
	}
	return &row, nil
}

// KeyString returns a key column of a CDC record as text (keys may arrive
// as JSON strings or numbers).
func (r *CDCRecord) KeyString(col string) string { return valueText(r.Key[col]) }

// valueText is a decoded JSON value as key text.
func valueText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		b, _ := jsonAPI.Marshal(v)
		return string(b)
	}
}

// Identity returns the value of the record's partition column col (the
// text its Kafka key must be, as the CDC bridge writes it), or an error
// when the record contradicts itself: its key lacks col, or its row names
// another value for col. A stage identifies a row by its Kafka key; a row
// keyed MVICTIM that says it is MATTACK must not be applied to either.
func (r *CDCRecord) Identity(col string) (string, error) {
	id := r.KeyString(col)
	if id == "" {
		return "", fmt.Errorf("%s change without key column %s", r.Table, col)
	}
	if len(r.Row) == 0 || string(r.Row) == "null" {
		return id, nil // a delete carries only the key
	}
	var row map[string]any
	if err := jsonAPI.Unmarshal(r.Row, &row); err != nil {
		return "", &DecodeError{Type: "row of " + r.Table, Err: err}
	}
	if v, ok := row[col]; ok && valueText(v) != id {
		return "", fmt.Errorf("%s change with key %s=%q has a row with %s=%q", r.Table, col, id, col, valueText(v))
	}
	return id, nil
}
