// Package simulator is a seeded synthetic shop for `rtm dev`, demos and
// tests. It writes members, items, favourites, carts and orders through the
// in-memory Change Tracking source (mssql.MemCT), exactly as the real shop
// writes SQL Server, so the CDC bridge downstream cannot tell the
// difference; optionally it also emits the matching shopper behaviour
// (page views, cart adds, purchases) to an EventSink. The same seed yields
// the same sequence of writes and events.
package simulator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rtm-project/rtm/connectors/mssql"
	"github.com/rtm-project/rtm/topics"
)

// Config configures the shop.
type Config struct {
	// Seed makes a run reproducible.
	Seed uint64
	// Members and Items are created by Seed. Defaults 1000 and 200.
	Members, Items int
	// Start is the simulated clock at Seed; every Step advances it by
	// StepEvery. Defaults 2026-11-23T00:00:00Z and 10s. Rows and events
	// carry simulated time, so runs are reproducible.
	Start     time.Time
	StepEvery time.Duration
	// Interval is the real time between steps in Run. Default 100ms.
	Interval time.Duration
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{Members: 1000, Items: 200, Start: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC),
		StepEvery: 10 * time.Second, Interval: 100 * time.Millisecond}
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.Members == 0 {
		c.Members = d.Members
	}
	if c.Items == 0 {
		c.Items = d.Items
	}
	if c.Start.IsZero() {
		c.Start = d.Start
	}
	if c.StepEvery == 0 {
		c.StepEvery = d.StepEvery
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	return c
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Members < 1 || c.Items < 1 {
		errs = append(errs, fmt.Errorf("members (%d) and items (%d) must be at least 1", c.Members, c.Items))
	}
	if c.StepEvery < 0 || c.Interval < 0 {
		errs = append(errs, errors.New("step_every and interval must not be negative"))
	}
	return errors.Join(errs...)
}

// EventSink receives behaviour events (e.g. a producer to behavior.events).
type EventSink func(ctx context.Context, ev topics.BehaviorEvent) error

// Shop is the simulated shop. It is not safe for concurrent use: one
// goroutine calls Seed, Step or Run.
type Shop struct {
	cfg  Config
	ct   *mssql.MemCT
	sink EventSink
	rnd  *rand.Rand
	now  time.Time
	n    int // events emitted, for deterministic IDs

	members []string
	active  map[string]bool
	items   []*item
	favs    pairs
	cart    pairs
	orders  int
}

type item struct {
	id    string
	price float64
	stock int
	row   map[string]any
}

// New returns a shop writing to ct (which must have mssql.DefaultTables)
// and emitting behaviour to sink (nil: none).
func New(cfg Config, ct *mssql.MemCT, sink EventSink) (*Shop, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simulator config: %w", err)
	}
	if ct == nil {
		return nil, errors.New("simulator config: no change tracking source")
	}
	return &Shop{cfg: cfg, ct: ct, sink: sink, now: cfg.Start, active: map[string]bool{},
		rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}, nil
}

// Now is the simulated clock.
func (s *Shop) Now() time.Time { return s.now }

// Seed creates the members and items, in one transaction each.
func (s *Shop) Seed(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.ct.Txn(func(w mssql.Writer) error {
		for i := range s.cfg.Members {
			id := fmt.Sprintf("M%05d", i+1)
			if err := w.Insert("members", s.memberRow(id)); err != nil {
				return err
			}
			s.members = append(s.members, id)
			s.active[id] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seeding members: %w", err)
	}
	err = s.ct.Txn(func(w mssql.Writer) error {
		for i := range s.cfg.Items {
			it := s.newItem(fmt.Sprintf("I%04d", i+1))
			if err := w.Insert("items", it.row); err != nil {
				return fmt.Errorf("seeding items: %w", err)
			}
			s.items = append(s.items, it)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Favourites follow a popularity skew: a few items are everybody's
	// favourites, most are somebody's.
	return s.ct.Txn(func(w mssql.Writer) error {
		for _, m := range s.members {
			for range s.rnd.IntN(7) {
				it := s.popularItem()
				if s.favs.has(m, it.id) {
					continue
				}
				if err := w.Insert("favorites", map[string]any{"member_id": m, "item_id": it.id, "created_at": s.now}); err != nil {
					return fmt.Errorf("seeding favourites: %w", err)
				}
				s.favs.add(m, it.id)
			}
		}
		return nil
	})
}

// popularItem picks an item with a popularity skew (low indexes are
// popular).
func (s *Shop) popularItem() *item {
	u := s.rnd.Float64()
	return s.items[int(float64(len(s.items))*u*u*u)]
}

// timezones: most members live in Japan; some order from abroad.
var timezones = []string{"Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo", "Asia/Tokyo",
	"Asia/Singapore", "Europe/London", "America/Los_Angeles"}

var (
	brands      = []string{"Acme", "Hoshi", "Kumo", "Nami", "Sora", "Yama"}
	categories  = []string{"shoes", "bags", "outerwear", "tops", "accessories", "kitchen"}
	prefectures = []string{"Tokyo", "Osaka", "Kanagawa", "Aichi", "Fukuoka", "Hokkaido", "Kyoto"}
	genders     = []string{"female", "male", "other", ""}
)

func (s *Shop) memberRow(id string) map[string]any {
	r := s.rnd
	birthday := time.Date(1950+r.IntN(55), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
	return map[string]any{
		"member_id": id, "email": id + "@example.com", "line_user_id": "U" + id, "push_token": "pt-" + id,
		"mail_opt_in": r.IntN(10) < 7, "line_opt_in": r.IntN(10) < 5, "push_opt_in": r.IntN(10) < 4,
		"status": "active", "is_debug": r.IntN(100) == 0, "gender": genders[r.IntN(len(genders))],
		"birthday": birthday.Format(time.DateOnly), "prefecture": prefectures[r.IntN(len(prefectures))],
		"timezone": timezones[r.IntN(len(timezones))], "registered_at": s.now.Add(-time.Duration(r.IntN(3*365)) * 24 * time.Hour),
	}
}

func (s *Shop) newItem(id string) *item {
	r := s.rnd
	it := &item{id: id, price: float64(500 + 100*r.IntN(300)), stock: r.IntN(20)}
	it.row = map[string]any{"item_id": id, "name": "Item " + id, "brand": brands[r.IntN(len(brands))],
		"category": categories[r.IntN(len(categories))], "price": it.price, "stock": it.stock,
		"url": "https://shop.example/items/" + id, "image_url": "https://shop.example/img/" + id + ".jpg"}
	return it
}

// Run steps every Interval until ctx is done (then returns nil).
func (s *Shop) Run(ctx context.Context) error {
	if len(s.members) == 0 {
		if err := s.Seed(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.Step(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// NoonZone returns a fixed-offset IANA zone (Etc/GMT±N) in which it is
// about noon now. Members living there are outside any quiet hours, so the
// example timing rules send to them at once: tests, benchmarks and the
// chaos suite give their members this zone to get deliveries without
// waiting for morning.
func NoonZone() string {
	k := 12 - time.Now().UTC().Hour()
	switch {
	case k > 0:
		return fmt.Sprintf("Etc/GMT-%d", k)
	case k < 0:
		return fmt.Sprintf("Etc/GMT+%d", -k)
	}
	return "UTC"
}
