package stage

import (
	"errors"
	"strings"
	"testing"

	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/topics"
)

// gokaContext names goka.Context for embedding (a field named Context
// would hide its Context method).
type gokaContext = goka.Context

// recordCtx is the goka.Context of one record: what the integrity checks
// read, and the dead letters they write.
type recordCtx struct {
	gokaContext // unimplemented methods panic
	topic       string
	key         string
	partition   int32
	dead        []*topics.DeadLetter
}

func (c *recordCtx) Topic() goka.Stream { return goka.Stream(c.topic) }
func (c *recordCtx) Key() string        { return c.key }
func (c *recordCtx) Partition() int32   { return c.partition }
func (c *recordCtx) Offset() int64      { return 7 }
func (c *recordCtx) Emit(topic goka.Stream, key string, value any, _ ...goka.ContextOption) {
	if dl, ok := value.(*topics.DeadLetter); ok && topic == topics.DLQ {
		c.dead = append(c.dead, dl)
	}
}

// TestDecodeKeyedAdmitsOnlyRecordsWhereTheyBelong: a record is applied
// only when its key is its identity and it is on its key's partition;
// otherwise it goes to dlq with the reason.
func TestDecodeKeyedAdmitsOnlyRecordsWhereTheyBelong(t *testing.T) {
	const n = 4
	keys := Keys{Stage: "test", Partitions: n}
	home := topics.Partition([]byte("MVICTIM"), n)
	members := func(key, id string) []byte {
		b, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: "members", Op: topics.OpUpdate, Version: 1,
			Key: map[string]any{"member_id": id}, Row: []byte(`{"member_id":"` + id + `","email":"x@example.jp"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name      string
		topic     string
		key       string
		partition int32
		value     []byte
		reason    string // "" admits
	}{
		{"well-formed", topics.CDCMembers, "MVICTIM", home, members("MVICTIM", "MVICTIM"), ""},
		{"keyed by the victim, about the attacker", topics.CDCMembers, "MVICTIM", home, members("MVICTIM", "MATTACK"), ErrMiskeyed.Error()},
		{"key map and row disagree", topics.CDCMembers, "MVICTIM", home,
			[]byte(`{"schema_version":1,"table":"members","op":"u","version":2,"key":{"member_id":"MVICTIM"},"row":{"member_id":"MATTACK"}}`),
			`key member_id="MVICTIM" has a row with member_id="MATTACK"`},
		{"another table's row", topics.CDCMembers, "MVICTIM", home,
			[]byte(`{"schema_version":1,"table":"favorites","op":"d","version":2,"key":{"member_id":"MVICTIM","item_id":"I1"}}`),
			`a "favorites" change on the topic of table "members"`},
		{"on another partition", topics.CDCMembers, "MVICTIM", (home + 1) % n, members("MVICTIM", "MVICTIM"), ErrMisplaced.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := &recordCtx{topic: tc.topic, key: tc.key, partition: tc.partition}
			_, ok := DecodeKeyed(ctx, keys, topics.CDCCodec{}, tc.value, CDCIdentity("members", "member_id"))
			if tc.reason == "" {
				if !ok || len(ctx.dead) != 0 {
					t.Fatalf("refused a well-formed record: %+v", ctx.dead)
				}
				return
			}
			if ok {
				t.Fatal("admitted")
			}
			if len(ctx.dead) != 1 || !strings.Contains(ctx.dead[0].Reason, tc.reason) {
				t.Fatalf("dead letters %+v, want one whose reason says %q", ctx.dead, tc.reason)
			}
			if dl := ctx.dead[0]; dl.Topic != tc.topic || dl.Partition != tc.partition || dl.Key != tc.key || dl.Stage != "test" {
				t.Errorf("dead letter %+v does not say where the record was", dl)
			}
		})
	}
}

// TestCheckWithoutPartitionCountRefuses: a stage built without its
// partition count admits nothing rather than skipping the check.
func TestCheckWithoutPartitionCountRefuses(t *testing.T) {
	err := Keys{Stage: "test"}.Check(&recordCtx{key: "M1"}, "M1")
	if !errors.Is(err, ErrMisplaced) {
		t.Fatalf("Check without partitions = %v, want ErrMisplaced", err)
	}
}

func TestEventIdentity(t *testing.T) {
	for _, tc := range []struct {
		e    topics.Event
		want string
	}{
		{topics.Event{MemberID: "M1", ItemID: "I1"}, "M1"},
		{topics.Event{ItemID: "I1"}, "I1"},
		{topics.Event{}, ""},
	} {
		got, err := EventIdentity(&tc.e)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("EventIdentity(%+v) = %q, %v; want %q", tc.e, got, err, tc.want)
		}
	}
}
