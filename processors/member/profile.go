// Package member is the member table, the contract every stage that reads
// member state shares and none owns: its topic (member-state-table), its
// row (Profile) and codec, its partition-local indexes (favourite item →
// member, segment → member), and how the shop's change rows, behaviour
// events and delivery results update a profile. The member-state stage
// (processors/memberstate) writes the table; audience and filter join it.
// The stages after filter read the member snapshot filter attaches to each
// offer (Snapshot), and send reads the small member-consent table
// (Consent), so the table is kept in three places instead of six.
//
// Every update is idempotent, because Goka processing is at-least-once:
// change rows apply only when their Change Tracking version is newer than the
// one recorded for that row, behaviour events and delivery results only when
// their ID has not been seen. Nothing is a blind increment.
package member

import (
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bytedance/sonic"
	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Limits that keep a profile small: it is read on every offer.
const (
	maxOrders      = 20
	maxRecentSends = 50
	maxSeenIDs     = 512
	// engagementHalfLife is the time after which a send, open or click
	// counts half. Decay is computed from event times, not the wall clock,
	// so a replay yields the same profile.
	engagementHalfLife = 30 * 24 * time.Hour
)

// Profile is a member's state. It is the value of member-state-table, JSON
// (readable with kcat).
type Profile struct {
	MemberID string `json:"member_id"`
	// Exists is false until a members row arrives and after it is deleted;
	// such a member is never targeted.
	Exists       bool      `json:"exists"`
	Email        string    `json:"email,omitempty"`
	LineUserID   string    `json:"line_user_id,omitempty"`
	PushToken    string    `json:"push_token,omitempty"`
	MailOptIn    bool      `json:"mail_opt_in"`
	LineOptIn    bool      `json:"line_opt_in"`
	PushOptIn    bool      `json:"push_opt_in"`
	Status       string    `json:"status,omitempty"`
	IsDebug      bool      `json:"is_debug"`
	Gender       string    `json:"gender,omitempty"`
	Birthday     string    `json:"birthday,omitempty"`
	Prefecture   string    `json:"prefecture,omitempty"`
	Timezone     string    `json:"timezone,omitempty"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	// Segments are the shop's segments the member is in, sorted.
	Segments []string `json:"segments,omitempty"`

	// Versions is the last applied Change Tracking version per source row
	// ("members", "fav/<item>", "order/<id>", "cart/<item>"), kept after a
	// delete so that a late, older change is still recognised as stale.
	Versions map[string]int64 `json:"versions,omitempty"`

	Favorites   map[string]time.Time `json:"favorites,omitempty"`
	Cart        map[string]CartLine  `json:"cart,omitempty"`
	Orders      []Order              `json:"orders,omitempty"` // newest last, at most maxOrders
	OrdersCount int                  `json:"orders_count"`
	LastOrderAt time.Time            `json:"last_order_at,omitzero"`

	// Engagement per channel (MAIL, LINE, PUSH, INAPP), time-decayed.
	Engagement map[string]Engagement `json:"engagement,omitempty"`
	// Activity counts behaviour by hour of day in the member's time zone.
	Activity    [24]uint32 `json:"activity,omitzero"`
	RecentSends []Send     `json:"recent_sends,omitempty"`
	// SeenHashes holds the most recent behaviour-event and delivery-result
	// IDs applied, at most maxSeenIDs, so a record produced twice is not
	// counted twice: each as its 8-byte hash (seenHash), oldest first,
	// which JSON carries as one base64 string. Every stage that joins the
	// table decodes this on every read: kept as 512 JSON strings, a busy
	// member's IDs were 20 KB of a 31 KB profile and a quarter of its
	// decode time (BenchmarkDecodeProfile). Two IDs whose hashes collide
	// within one member's window would count the second as seen (a
	// chance of about 512 in 2^64 per record).
	SeenHashes []byte `json:"seen_hashes,omitempty"`
	// Seen is where profiles written before SeenHashes kept the IDs:
	// still honoured, moved into SeenHashes at the member's next behaviour
	// event or delivery result, never written again.
	Seen []string `json:"seen,omitempty"`
	// OptOuts are unsubscribes received as behaviour events (channel →
	// when). They hold against members rows that still say opted in, until
	// a row shows the shop recorded the opt-out itself (see applyOptOuts):
	// a one-click unsubscribe must not be undone by an unrelated update.
	OptOuts map[string]time.Time `json:"opt_outs,omitempty"`
	// Offsets is the last applied offset per input partition of behaviour
	// events and delivery results ("behavior.events/3"). A member's records
	// of a topic are all on its key's partition (records elsewhere go to
	// dlq), so their offsets only grow: a record at or below the mark is a
	// replay (rtm replay, a rebalance) and is skipped, however far back it
	// goes. Marks are per partition because offsets of two partitions are
	// unrelated: after a repartitioning, a mark from the old partition
	// would skip the new one's records. Seen still catches a record
	// produced twice.
	Offsets map[string]int64 `json:"offsets,omitempty"`
	// Exposures are the member's recent sent and held_out deliveries,
	// which a new order is attributed to (Attribute): at most
	// maxExposures, none older than the conversion window.
	Exposures []Exposure `json:"exposures,omitempty"`
}

// CartLine is an item in the member's cart.
type CartLine struct {
	Quantity int       `json:"quantity"`
	AddedAt  time.Time `json:"added_at"`
}

// Order is a recent order.
type Order struct {
	OrderID string    `json:"order_id"`
	ItemID  string    `json:"item_id"`
	Status  string    `json:"status"`
	Total   float64   `json:"total"`
	At      time.Time `json:"at"`
}

// Engagement is a channel's decayed send, open and click counts as of At.
type Engagement struct {
	Sent    float64   `json:"sent"`
	Opened  float64   `json:"opened"`
	Clicked float64   `json:"clicked"`
	At      time.Time `json:"at"`
}

// Send is a delivery the member received.
type Send struct {
	DeliveryID string    `json:"delivery_id"`
	CampaignID string    `json:"campaign_id"`
	Channel    string    `json:"channel"`
	At         time.Time `json:"at"`
}

// Targetable reports whether the member may be sent anything at all.
func (p *Profile) Targetable() bool { return p != nil && p.Exists && p.Status != "withdrawn" }

// Reachable lists the channels the member can be reached on now: opted in
// and with an address. The in-app inbox reaches every targetable member.
func (p *Profile) Reachable() []string {
	if !p.Targetable() {
		return nil
	}
	var out []string
	if p.MailOptIn && p.Email != "" {
		out = append(out, topics.ChannelMail)
	}
	if p.LineOptIn && p.LineUserID != "" {
		out = append(out, topics.ChannelLine)
	}
	if p.PushOptIn && p.PushToken != "" {
		out = append(out, topics.ChannelPush)
	}
	return append(out, topics.ChannelInApp)
}

// Facts maps the profile to the marketer-facing rule facts, as of now.
func (p *Profile) Facts(now time.Time) rules.Member {
	m := rules.Member{
		MemberID: p.MemberID, Email: p.Email, Status: p.Status, IsDebug: p.IsDebug, Gender: p.Gender,
		Birthday: p.Birthday, Prefecture: p.Prefecture, Timezone: p.Timezone,
		MailOptIn: p.MailOptIn, LineOptIn: p.LineOptIn, PushOptIn: p.PushOptIn,
		Reachable: p.Reachable(), FavoritesCount: len(p.Favorites), OrdersCount: p.OrdersCount, Segments: p.Segments,
		DaysSinceLastOrder: -1,
	}
	if !p.Exists {
		m.Status = "deleted"
	}
	if b, err := time.Parse(time.DateOnly, p.Birthday); err == nil {
		m.Age = age(b, now)
	}
	if !p.LastOrderAt.IsZero() {
		m.DaysSinceLastOrder = int(now.Sub(p.LastOrderAt) / (24 * time.Hour))
	}
	for _, s := range p.RecentSends {
		if now.Sub(s.At) < 24*time.Hour {
			m.SentToday++
		}
		if now.Sub(s.At) < 7*24*time.Hour {
			m.SentThisWeek++
		}
	}
	return m
}

func age(birth, now time.Time) int {
	a := now.Year() - birth.Year()
	if now.YearDay() < birth.YearDay() {
		a--
	}
	return a
}

// BestHour returns the member's most active local hour, and false when
// there is no activity yet.
func (p *Profile) BestHour() (int, bool) {
	best, n := 0, uint32(0)
	for h, c := range p.Activity {
		if c > n {
			best, n = h, c
		}
	}
	return best, n > 0
}

// Location returns the member's time zone, UTC when unknown.
func (p *Profile) Location() *time.Location { return location(p.Timezone) }

var locations sync.Map // IANA name → *time.Location

func location(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		l = time.UTC
	}
	locations.Store(name, l)
	return l
}

func (p *Profile) seen(id string) bool {
	h := seenHash(id)
	for i := 0; i+8 <= len(p.SeenHashes); i += 8 {
		if binary.LittleEndian.Uint64(p.SeenHashes[i:]) == h {
			return true
		}
	}
	return slices.Contains(p.Seen, id)
}

// seenHash is an ID's entry in SeenHashes: 64-bit FNV-1a (as
// hash/fnv's New64a, without its allocation), stable across builds and
// processes, which a profile outlives.
func seenHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// Replayed reports whether the record at offset of topic's partition was
// applied before. A mark recorded per topic alone (before marks were kept
// per partition) still counts for the partition the member is on now.
func (p *Profile) Replayed(topic string, partition int32, offset int64) bool {
	last, ok := p.Offsets[offsetKey(topic, partition)]
	if !ok {
		last, ok = p.Offsets[topic]
	}
	return ok && offset <= last
}

// Applied marks the record at offset of topic's partition as applied.
func (p *Profile) Applied(topic string, partition int32, offset int64) {
	if p.Offsets == nil {
		p.Offsets = map[string]int64{}
	}
	delete(p.Offsets, topic) // a per-topic mark from before is superseded
	p.Offsets[offsetKey(topic, partition)] = offset
}

// offsetKey is the key of a partition's mark in Offsets: offsets of
// different partitions are unrelated sequences, so each keeps its own.
func offsetKey(topic string, partition int32) string {
	return topic + "/" + strconv.Itoa(int(partition))
}

func (p *Profile) remember(id string) {
	for _, old := range p.Seen { // a profile from before SeenHashes
		p.SeenHashes = binary.LittleEndian.AppendUint64(p.SeenHashes, seenHash(old))
	}
	p.Seen = nil
	p.SeenHashes = binary.LittleEndian.AppendUint64(p.SeenHashes, seenHash(id))
	if excess := len(p.SeenHashes) - 8*maxSeenIDs; excess > 0 {
		p.SeenHashes = slices.Delete(p.SeenHashes, 0, excess)
	}
}

// Codec is the member-state-table codec.
type Codec = stage.TableCodec[Profile]

// ReadCodec is the codec of a stage that only reads the member table
// (filter's join). It decodes a row into a Profile without the fields
// only member-state needs to apply updates: the replay bookkeeping
// (Versions, Offsets, SeenHashes, Seen), the exposures orders are
// attributed to, and the order and cart lists. Facts and Snapshot, all a
// reader uses, read none of them (TestReadCodecKeepsWhatReadersRead
// fails if that changes). They are a large part of a busy member's row:
// skipping them decodes it in 29 µs instead of 40 (BenchmarkDecodeProfile).
// Encode is Codec's; a reader never writes the table.
type ReadCodec struct{ Codec }

// Decode decodes a row into a *Profile with the fields above left empty.
func (ReadCodec) Decode(b []byte) (any, error) {
	var v struct {
		Profile
		// At the outer level, these names win over the Profile's.
		Versions   skipped `json:"versions"`
		Offsets    skipped `json:"offsets"`
		SeenHashes skipped `json:"seen_hashes"`
		Seen       skipped `json:"seen"`
		Exposures  skipped `json:"exposures"`
		Orders     skipped `json:"orders"`
		Cart       skipped `json:"cart"`
	}
	if err := sonic.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return &v.Profile, nil
}

// skipped is a JSON value that is not decoded.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// SegmentsIndex is the name of the partition-local index segment → member.
const SegmentsIndex = "seg"

// IndexSegments is the Indexer of SegmentsIndex: the segments of a
// targetable member, so a segment audience never finds a withdrawn one.
func IndexSegments(_ string, value []byte) ([]string, error) {
	var p struct {
		Exists   bool     `json:"exists"`
		Status   string   `json:"status"`
		Segments []string `json:"segments"`
	}
	if err := sonic.Unmarshal(value, &p); err != nil {
		return nil, nil // not a profile: nothing to index
	}
	if !p.Exists || p.Status == "withdrawn" {
		return nil, nil
	}
	return p.Segments, nil
}

// FavoritesIndex is the name of the partition-local index
// favourite item → member.
const FavoritesIndex = "fav"

// IndexFavorites is the Indexer of FavoritesIndex: the items a targetable
// member favourited. Withdrawn and deleted members have no entries, so an
// audience scan never finds them.
func IndexFavorites(_ string, value []byte) ([]string, error) {
	var p struct {
		Exists    bool                 `json:"exists"`
		Status    string               `json:"status"`
		Favorites map[string]time.Time `json:"favorites"`
	}
	if err := sonic.Unmarshal(value, &p); err != nil {
		return nil, nil // not a profile: nothing to index
	}
	if !p.Exists || p.Status == "withdrawn" {
		return nil, nil
	}
	keys := make([]string, 0, len(p.Favorites))
	for item := range p.Favorites {
		if item != "" {
			keys = append(keys, item)
		}
	}
	return keys, nil
}

// Table is the member table's topic: member-state's group table, which
// other stages join.
var Table = goka.GroupTable(goka.Group(topics.GroupMemberState))

// Indexes are the partition-local indexes of the member table, kept by the
// one stage that looks members up by them: audience, on its copy. The
// owner (member-state) and filter read rows by key only and keep none, so
// their writes diff no index entries.
func Indexes() map[string]state.Indexer {
	return map[string]state.Indexer{FavoritesIndex: IndexFavorites, SegmentsIndex: IndexSegments}
}
