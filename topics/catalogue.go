package topics

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Cleanup is a topic's cleanup.policy.
type Cleanup string

const (
	Delete  Cleanup = "delete"
	Compact Cleanup = "compact"
)

// PartitionerMurmur2 names Kafka's default partitioner (see Partition). It is
// the only partitioner RTM speaks; the catalogue records it per topic so that
// a declaration that says otherwise is caught, not silently mis-routed.
const PartitionerMurmur2 = "murmur2"

// Consumer-group (stage) names. A Goka group G owns the topics G-table
// (compacted changelog of its state) and G-loop (its loopback stream).
const (
	GroupMemberState = "member-state"
	GroupDetect      = "detect"
	GroupCampaign    = "campaign"
	GroupAudience    = "audience"
	GroupFilter      = "filter"
	GroupChannel     = "channel"
	GroupTiming      = "timing"
	GroupRender      = "render"
	GroupSend        = "send"
	GroupInbox       = "inbox"
)

// TableOf and LoopOf return Goka's names for a group's table and loop topics.
func TableOf(group string) string { return group + "-table" }
func LoopOf(group string) string  { return group + "-loop" }

// ValueCodec is what Goka calls a Codec; every JSON[T] implements it.
type ValueCodec interface {
	Encode(value any) ([]byte, error)
	Decode(data []byte) (any, error)
}

// Topic declares one topic. Provisioning (`rtm topics apply`), the stages
// and the tools all read these declarations; nothing else names a topic's
// shape.
type Topic struct {
	Name       string
	Partitions int32
	Cleanup    Cleanup
	// Retention for delete-policy topics; zero means the cluster default.
	Retention time.Duration
	// Key says what the record key is, e.g. "member_id".
	Key string
	// Value names the value type (a Go type in this package unless noted).
	Value string
	// Codec decodes and encodes values; nil where the owning stage defines it.
	Codec ValueCodec
	// CoPartitioned topics are read together by Goka groups, so they must
	// share the catalogue's partition count and partitioner: a member's
	// records and state then live on the same partition number everywhere.
	CoPartitioned bool
	Partitioner   string
	// Owner is the group whose table or loop this is, or the writer.
	Owner string
	Doc   string
}

// Configs returns the topic-level configs provisioning sets.
func (t Topic) Configs() map[string]*string {
	c := map[string]*string{"cleanup.policy": ptr(string(t.Cleanup))}
	if t.Retention > 0 {
		c["retention.ms"] = ptr(fmt.Sprint(t.Retention.Milliseconds()))
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// Catalogue is every topic of the system.
type Catalogue struct {
	// Partitions is the one partition count of every co-partitioned topic.
	Partitions int32
	// Replication is the replication factor used when creating topics.
	Replication int16
	Topics      []Topic
}

// DefaultPartitions is the stage partition count in production: enough
// instances of a stage to scale out, few enough to keep per-partition Pebble
// stores and changelog recovery small.
const DefaultPartitions = 16

// New returns RTM's catalogue for the given stage partition count and
// replication factor.
func New(partitions int32, replication int16) Catalogue {
	member := func(name, value string, codec ValueCodec, doc string) Topic {
		return Topic{Name: name, Partitions: partitions, Cleanup: Delete, Key: "member_id", Value: value,
			Codec: codec, CoPartitioned: true, Doc: doc}
	}
	cdc := func(table, key string) Topic {
		return Topic{Name: "cdc." + table, Partitions: partitions, Cleanup: Delete, Key: key,
			Value: "CDCRecord", Codec: CDCCodec{}, CoPartitioned: true, Owner: "cdc",
			Doc: "SQL Server Change Tracking rows of dbo." + table}
	}
	table := func(group, key, value, doc string) Topic {
		return Topic{Name: TableOf(group), Partitions: partitions, Cleanup: Compact, Key: key, Value: value,
			CoPartitioned: true, Owner: group, Doc: doc}
	}
	loop := func(group, value, doc string) Topic {
		return Topic{Name: LoopOf(group), Partitions: partitions, Cleanup: Delete, Key: "member_id", Value: value,
			CoPartitioned: true, Owner: group, Doc: doc}
	}
	week := 7 * 24 * time.Hour
	ts := []Topic{
		cdc("members", "member_id"),
		cdc("items", "item_id"),
		cdc("favorites", "member_id"),
		cdc("orders", "member_id"),
		cdc("cart_items", "member_id"),
		{Name: CDCCheckpoints, Partitions: 1, Cleanup: Compact, Key: "table name", Value: "Checkpoint (connectors/mssql)",
			Owner: "cdc", Doc: "last Change Tracking version written per table, in the same transaction as its rows"},
		{Name: CDCKeys, Partitions: 1, Cleanup: Compact, Key: "table and primary key", Value: "KeyRecord (connectors/mssql)",
			Owner: "cdc", Doc: "primary keys the CDC bridge has published as live, for the deletes a resync must send"},
		member(BehaviorEvents, "BehaviorEvent", BehaviorEventCodec{}, "shopper behaviour from the collector and apps"),
		{Name: Events, Partitions: partitions, Cleanup: Delete, Key: "member_id or item_id", Value: "Event",
			Codec: EventCodec{}, CoPartitioned: true, Owner: GroupDetect, Doc: "business events: price_drop, back_in_stock, cart_abandoned, ..."},
		{Name: EventsUnmatched, Partitions: partitions, Cleanup: Delete, Retention: 4 * week, Key: "member_id or item_id (as events)",
			Value: "UnmatchedEvent", Codec: UnmatchedEventCodec{}, CoPartitioned: true, Owner: GroupCampaign,
			Doc: "events no campaign matched, one record per event, with the campaign tables that were evaluated"},
		{Name: AudienceRequests, Partitions: partitions, Cleanup: Delete, Key: "partition key (PartitionKeys)",
			Value: "AudienceRequest", Codec: AudienceRequestCodec{}, CoPartitioned: true, Owner: GroupCampaign,
			Doc: "item-wide audiences, one copy per partition, answered from partition-local indexes"},
		member(OffersCandidates, "Offer", OfferCodec{}, "offers before member filtering"),
		member(OffersFiltered, "Offer", OfferCodec{}, "offers that passed member filtering"),
		member(OffersExcluded, "Offer", OfferCodec{}, "offers dropped by filter, channel or timing, with the deciding rule and reason"),
		member(OffersRouted, "Offer", OfferCodec{}, "offers with a channel"),
		member(OffersReady, "Offer", OfferCodec{}, "offers due now, within caps"),
		member(Deliveries, "Delivery", DeliveryCodec{}, "rendered per-channel payloads"),
		member(DeliveryResults, "DeliveryResult", DeliveryResultCodec{}, "delivery outcomes; feeds member-state"),
		{Name: Conversions, Partitions: partitions, Cleanup: Delete, Key: "member_id", Value: "Conversion",
			Codec: ConversionCodec{}, CoPartitioned: true, Owner: GroupMemberState,
			Doc: "orders attributed to the member's sent and held_out deliveries within the conversion window (rtm report)"},
		{Name: Rules, Partitions: 1, Cleanup: Compact, Key: "rule table name", Value: "TableSpec (rules)",
			Owner: "rtm rules publish", Doc: "latest published version of every rule table"},
		{Name: RulesHistory, Partitions: 1, Cleanup: Delete, Retention: 10 * 365 * 24 * time.Hour, Key: "rule table name",
			Value: "TableSpec (rules)", Owner: "rtm rules publish", Doc: "every published rule-table version, for rollback"},
		{Name: DLQ, Partitions: partitions, Cleanup: Delete, Retention: 4 * week, Key: "original key",
			Value: "DeadLetter", Codec: DeadLetterCodec{}, Doc: "records a stage could not process, with the reason"},
		table(GroupMemberState, "member_id", "member.Profile (processors/member)", "member profiles; audience indexes its copy: favourite item → member, segment → member"),
		{Name: MemberConsent, Partitions: partitions, Cleanup: Compact, Key: "member_id", Value: "Consent",
			Codec: ConsentCodec{}, CoPartitioned: true, Owner: GroupMemberState,
			Doc: "channels each member may be sent on now; send checks it, so opt-outs after filtering hold"},
		table(GroupDetect, "item_id or member_id", "detector state (processors/detect)", "item prices and stock; carts with due times"),
		loop(GroupDetect, "tick", "timer ticks that release due cart-abandonment checks"),
		table(GroupTiming, "member_id", "ledger (processors/timing)", "frequency ledger and held offers with due-time index"),
		loop(GroupTiming, "tick", "timer ticks that release held offers"),
		loop(GroupSend, "tick", "timer ticks that release deliveries waiting to be retried after a channel outage"),
		table(GroupSend, "member_id", "sent deliveries (processors/send)", "delivery IDs already sent, for idempotency"),
		member(InAppMessages, "InAppMessage", nil, "in-app messages from the send stage"),
		table(GroupInbox, "member_id", "Inbox (processors/inbox)", "each member's in-app inbox, served over HTTP"),
	}
	for i := range ts {
		if ts[i].Partitioner == "" {
			ts[i].Partitioner = PartitionerMurmur2
		}
	}
	return Catalogue{Partitions: partitions, Replication: replication, Topics: ts}
}

// Lookup returns the declaration of a topic.
func (c Catalogue) Lookup(name string) (Topic, bool) {
	i := slices.IndexFunc(c.Topics, func(t Topic) bool { return t.Name == name })
	if i < 0 {
		return Topic{}, false
	}
	return c.Topics[i], true
}

// Validate reports every inconsistency, above all co-partitioning mismatches,
// which would otherwise silently split a member's state across partitions.
func (c Catalogue) Validate() error {
	var errs []error
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("catalogue: partitions %d must be at least 1", c.Partitions))
	}
	if c.Replication < 1 {
		errs = append(errs, fmt.Errorf("catalogue: replication %d must be at least 1", c.Replication))
	}
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if t.Name == "" {
			errs = append(errs, errors.New("catalogue: a topic has no name"))
			continue
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("topic %s: declared twice", t.Name))
		}
		seen[t.Name] = true
		if t.Partitions < 1 {
			errs = append(errs, fmt.Errorf("topic %s: partitions %d must be at least 1", t.Name, t.Partitions))
		}
		if t.Cleanup != Delete && t.Cleanup != Compact {
			errs = append(errs, fmt.Errorf("topic %s: cleanup policy %q is not delete or compact", t.Name, t.Cleanup))
		}
		if t.Key == "" || t.Value == "" {
			errs = append(errs, fmt.Errorf("topic %s: key and value must be documented", t.Name))
		}
		if t.Key == "member_id" && !t.CoPartitioned {
			errs = append(errs, fmt.Errorf("topic %s: keyed by member_id, so it must be co-partitioned", t.Name))
		}
		if t.CoPartitioned && t.Partitions != c.Partitions {
			errs = append(errs, fmt.Errorf("topic %s: %d partitions, but co-partitioned topics must have %d", t.Name, t.Partitions, c.Partitions))
		}
		if t.CoPartitioned && t.Partitioner != PartitionerMurmur2 {
			errs = append(errs, fmt.Errorf("topic %s: partitioner %q, but co-partitioned topics must use %s", t.Name, t.Partitioner, PartitionerMurmur2))
		}
	}
	return errors.Join(errs...)
}
