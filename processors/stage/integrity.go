package stage

import (
	"errors"
	"fmt"

	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/topics"
)

// Every stage's state and joins are partition-local: a member's profile,
// ledger and sends live on the partition its key hashes to, and a stage
// identifies whom a record is about by its Kafka key alone. So a record is
// applied only when
//
//   - its key is its identity: what its own content says it is about (a
//     cdc.members record keyed MVICTIM whose row is MATTACK would otherwise
//     give MVICTIM the attacker's e-mail address), and
//   - it sits on the partition its key hashes to with the producers'
//     partitioner (topics.Partition, murmur2): a record elsewhere would be
//     applied to, or joined against, state that is not the key's, and its
//     offset would mix with another partition's.
//
// A record that fails either check goes to the dead-letter topic with the
// reason and is not applied. Keys checks both for every stage that reads
// keyed input topics; DecodeKeyed is Decode followed by the checks.

// Keys is how a stage admits the records of its keyed input topics.
type Keys struct {
	// Stage names the stage in dead letters.
	Stage string
	// Partitions is the partition count of the co-partitioned topics
	// (topics.Catalogue.Partitions); Goka refuses to run a group whose
	// inputs disagree on it.
	Partitions int32
}

// KeysOf returns the Keys of a stage run in env.
func KeysOf(stage string, env Env) Keys {
	return Keys{Stage: stage, Partitions: env.Catalogue.Partitions}
}

// ErrMisplaced is wrapped by the reason of a record that sits on a
// partition other than its key's.
var ErrMisplaced = errors.New("record is not on its key's partition")

// ErrMiskeyed is wrapped by the reason of a record whose key is not its
// content's identity.
var ErrMiskeyed = errors.New("record key is not the record's identity")

// Check returns why the record being processed must not be applied, or
// nil. identity is what the record's content says its key is; "" checks
// the placement only (a record whose value names no identity, such as a
// loop record).
func (k Keys) Check(ctx goka.Context, identity string) error {
	if identity != "" && ctx.Key() != identity {
		return fmt.Errorf("%w: key %q, but the record is about %q", ErrMiskeyed, ctx.Key(), identity)
	}
	if k.Partitions < 1 {
		return fmt.Errorf("%w: the stage has no partition count (topics.Catalogue.Partitions is %d)", ErrMisplaced, k.Partitions)
	}
	if want := topics.Partition([]byte(ctx.Key()), k.Partitions); ctx.Partition() != want {
		return fmt.Errorf("%w: key %q hashes to partition %d of %d (murmur2), the record is on partition %d; the producer does not use Kafka's default partitioner",
			ErrMisplaced, ctx.Key(), want, k.Partitions, ctx.Partition())
	}
	return nil
}

// Admit reports whether the record being processed may be applied (see
// Check); when it may not, the record goes to the dead-letter topic with
// the reason.
func (k Keys) Admit(ctx goka.Context, msg any, identity string) bool {
	if err := k.Check(ctx, identity); err != nil {
		DeadLetter(ctx, k.Stage, msg, err)
		return false
	}
	return true
}

// DecodeKeyed decodes the record being processed with c (as Decode does)
// and admits it with k: identity returns what the decoded record says its
// key is, or an error when the record contradicts itself. A record that
// cannot be decoded or admitted goes to the dead-letter topic with the
// reason, and ok is false.
func DecodeKeyed[T any, P interface {
	*T
	topics.Message
}](ctx goka.Context, k Keys, c topics.JSON[T, P], msg any, identity func(P) (string, error)) (v P, ok bool) {
	v, ok = Decode(ctx, k.Stage, c, msg)
	if !ok {
		return nil, false
	}
	id, err := identity(v)
	if err != nil {
		DeadLetter(ctx, k.Stage, msg, fmt.Errorf("record contradicts itself: %w", err))
		return nil, false
	}
	if !k.Admit(ctx, msg, id) {
		return nil, false
	}
	return v, true
}

// CDCIdentity is the identity of a change row of table on its cdc topic:
// the value of its partition column col (member_id, item_id), on which the
// record's key map and its row must agree. A row of another table on the
// topic is refused too: member-state would apply a favorites row on
// cdc.members as a favourite.
func CDCIdentity(table, col string) func(*topics.CDCRecord) (string, error) {
	return func(r *topics.CDCRecord) (string, error) {
		if r.Table != table {
			return "", fmt.Errorf("a %q change on the topic of table %q", r.Table, table)
		}
		return r.Identity(col)
	}
}

// OfferIdentity is an offer's member.
func OfferIdentity(o *topics.Offer) (string, error) { return o.MemberID, nil }

// DeliveryIdentity is a delivery's member.
func DeliveryIdentity(d *topics.Delivery) (string, error) { return d.MemberID, nil }

// ResultIdentity is a delivery result's member.
func ResultIdentity(r *topics.DeliveryResult) (string, error) { return r.MemberID, nil }

// BehaviorIdentity is a behaviour event's member.
func BehaviorIdentity(e *topics.BehaviorEvent) (string, error) { return e.MemberID, nil }

// EventIdentity is a business event's key: its member for member events
// (cart_abandoned), else its item (price_drop, back_in_stock), as detect
// keys them.
func EventIdentity(e *topics.Event) (string, error) {
	if e.MemberID != "" {
		return e.MemberID, nil
	}
	if e.ItemID == "" {
		return "", errors.New("event names neither member_id nor item_id")
	}
	return e.ItemID, nil
}
