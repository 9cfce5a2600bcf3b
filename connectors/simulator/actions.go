package simulator

import (
	"context"
	"fmt"
	"maps"
	"math"

	"github.com/rtm-project/rtm/topics"
)

// action is one kind of thing that happens in the shop, with its weight.
type action struct {
	name   string
	weight int
	do     func(s *Shop, ctx context.Context) error
}

// actions are weighted roughly like a real shop's traffic: browsing and
// favouriting dominate, orders and member changes are rare.
var actions = []action{
	{"page_view", 30, (*Shop).pageView},
	{"favorite", 15, (*Shop).favorite},
	{"unfavorite", 4, (*Shop).unfavorite},
	{"add_to_cart", 12, (*Shop).addToCart},
	{"remove_from_cart", 3, (*Shop).removeFromCart},
	{"order", 5, (*Shop).order},
	{"price_change", 8, (*Shop).priceChange},
	{"restock", 5, (*Shop).restock},
	{"opt_change", 3, (*Shop).optChange},
	{"new_member", 2, (*Shop).newMember},
	{"withdraw", 1, (*Shop).withdraw},
}

var totalWeight = func() int {
	n := 0
	for _, a := range actions {
		n += a.weight
	}
	return n
}()

// Step advances the simulated clock and performs one random action.
func (s *Shop) Step(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(s.members) == 0 {
		return fmt.Errorf("simulator: Seed before Step")
	}
	s.now = s.now.Add(s.cfg.StepEvery)
	pick := s.rnd.IntN(totalWeight)
	for _, a := range actions {
		if pick < a.weight {
			if err := a.do(s, ctx); err != nil {
				return fmt.Errorf("simulator %s: %w", a.name, err)
			}
			return nil
		}
		pick -= a.weight
	}
	return nil
}

// activeMember picks a random active member ("" if none is left).
func (s *Shop) activeMember() string {
	for range 10 {
		m := s.members[s.rnd.IntN(len(s.members))]
		if s.active[m] {
			return m
		}
	}
	return ""
}

func (s *Shop) randomItem() *item { return s.items[s.rnd.IntN(len(s.items))] }

func (s *Shop) emit(ctx context.Context, member, typ, itemID string, attrs map[string]string) error {
	if s.sink == nil {
		return nil
	}
	s.n++
	return s.sink(ctx, topics.BehaviorEvent{Envelope: topics.Envelope{SchemaVersion: topics.SchemaVersion},
		EventID: fmt.Sprintf("sim-%d-%d", s.cfg.Seed, s.n), MemberID: member, Type: typ, ItemID: itemID,
		At: s.now, Attrs: attrs})
}

func (s *Shop) pageView(ctx context.Context) error {
	m := s.activeMember()
	if m == "" {
		return nil
	}
	return s.emit(ctx, m, "page_view", s.randomItem().id, nil)
}

func (s *Shop) favorite(ctx context.Context) error {
	m, it := s.activeMember(), s.popularItem()
	if m == "" || s.favs.has(m, it.id) {
		return nil
	}
	if err := s.ct.Insert("favorites", map[string]any{"member_id": m, "item_id": it.id, "created_at": s.now}); err != nil {
		return err
	}
	s.favs.add(m, it.id)
	return nil
}

func (s *Shop) unfavorite(ctx context.Context) error {
	p, ok := s.favs.random(s.rnd)
	if !ok {
		return nil
	}
	if err := s.ct.Delete("favorites", map[string]any{"member_id": p[0], "item_id": p[1]}); err != nil {
		return err
	}
	s.favs.remove(p[0], p[1])
	return nil
}

func (s *Shop) addToCart(ctx context.Context) error {
	m, it := s.activeMember(), s.randomItem()
	if m == "" || it.stock == 0 {
		return nil
	}
	q := 1 + s.rnd.IntN(2)
	if err := s.ct.Upsert("cart_items", map[string]any{"member_id": m, "item_id": it.id, "quantity": q, "added_at": s.now}); err != nil {
		return err
	}
	s.cart.add(m, it.id)
	return s.emit(ctx, m, "add_to_cart", it.id, map[string]string{"quantity": fmt.Sprint(q)})
}

func (s *Shop) removeFromCart(ctx context.Context) error {
	p, ok := s.cart.random(s.rnd)
	if !ok {
		return nil
	}
	if err := s.ct.Delete("cart_items", map[string]any{"member_id": p[0], "item_id": p[1]}); err != nil {
		return err
	}
	s.cart.remove(p[0], p[1])
	return s.emit(ctx, p[0], "remove_from_cart", p[1], nil)
}

// order buys a cart line: the cart row goes, an order row and the item's
// lower stock come, in one transaction as the shop's checkout would.
func (s *Shop) order(ctx context.Context) error {
	p, ok := s.cart.random(s.rnd)
	if !ok {
		return nil
	}
	it := s.itemByID(p[1])
	if it == nil || it.stock == 0 {
		return nil
	}
	s.orders++
	id := fmt.Sprintf("O%07d", s.orders)
	it.stock--
	row := maps.Clone(it.row)
	row["stock"] = it.stock
	err := s.ct.Txn(func(w writer) error {
		if err := w.Delete("cart_items", map[string]any{"member_id": p[0], "item_id": p[1]}); err != nil {
			return err
		}
		if err := w.Insert("orders", map[string]any{"order_id": id, "member_id": p[0], "item_id": it.id,
			"status": "placed", "total": it.price, "ordered_at": s.now}); err != nil {
			return err
		}
		return w.Update("items", row)
	})
	if err != nil {
		it.stock++
		return err
	}
	it.row = row
	s.cart.remove(p[0], p[1])
	return s.emit(ctx, p[0], "purchase", it.id, map[string]string{"order_id": id})
}

// priceChange mostly drops prices (what campaigns react to), sometimes
// raises them back.
func (s *Shop) priceChange(ctx context.Context) error {
	it := s.randomItem()
	f := 1.1
	if s.rnd.IntN(4) > 0 {
		f = 0.95 - 0.35*s.rnd.Float64()
	}
	price := math.Max(100, math.Round(it.price*f/10)*10)
	row := maps.Clone(it.row)
	row["price"] = price
	if err := s.ct.Update("items", row); err != nil {
		return err
	}
	it.price, it.row = price, row
	return nil
}

// restock refills an item, often one that was sold out (back in stock).
func (s *Shop) restock(ctx context.Context) error {
	it := s.randomItem()
	for _, c := range s.items {
		if c.stock == 0 && s.rnd.IntN(2) == 0 {
			it = c
			break
		}
	}
	row := maps.Clone(it.row)
	row["stock"] = it.stock + 5 + s.rnd.IntN(20)
	if err := s.ct.Update("items", row); err != nil {
		return err
	}
	it.stock, it.row = row["stock"].(int), row
	return nil
}

func (s *Shop) optChange(ctx context.Context) error {
	m := s.activeMember()
	if m == "" {
		return nil
	}
	row := s.memberRow(m)
	return s.ct.Update("members", row)
}

func (s *Shop) newMember(ctx context.Context) error {
	id := fmt.Sprintf("M%05d", len(s.members)+1)
	row := s.memberRow(id)
	row["registered_at"] = s.now
	if err := s.ct.Insert("members", row); err != nil {
		return err
	}
	s.members = append(s.members, id)
	s.active[id] = true
	return s.emit(ctx, id, "app_open", "", nil)
}

// withdraw marks a member withdrawn (the row stays, as in the real shop)
// and removes their favourites and cart in the same transaction.
func (s *Shop) withdraw(ctx context.Context) error {
	m := s.activeMember()
	if m == "" {
		return nil
	}
	row := s.memberRow(m)
	row["status"] = "withdrawn"
	favs, carts := s.favs.of(m), s.cart.of(m)
	err := s.ct.Txn(func(w writer) error {
		if err := w.Update("members", row); err != nil {
			return err
		}
		for _, i := range favs {
			if err := w.Delete("favorites", map[string]any{"member_id": m, "item_id": i}); err != nil {
				return err
			}
		}
		for _, i := range carts {
			if err := w.Delete("cart_items", map[string]any{"member_id": m, "item_id": i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	delete(s.active, m)
	for _, i := range favs {
		s.favs.remove(m, i)
	}
	for _, i := range carts {
		s.cart.remove(m, i)
	}
	return nil
}

func (s *Shop) itemByID(id string) *item {
	for _, it := range s.items {
		if it.id == id {
			return it
		}
	}
	return nil
}
