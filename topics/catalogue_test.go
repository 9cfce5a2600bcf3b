package topics

import (
	"strings"
	"testing"
)

func TestCatalogueDeclaresTheContractTopics(t *testing.T) {
	cat := New(16, 3)
	if err := cat.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cdc.members", "cdc.items", "cdc.favorites", "cdc.orders", "cdc.cart_items",
		"behavior.events", "events", "events.unmatched", "audience.requests", "offers.candidates", "offers.filtered", "offers.routed",
		"offers.ready", "deliveries", "delivery.results", "rules", "dlq", "member-state-table"} {
		if _, ok := cat.Lookup(name); !ok {
			t.Errorf("catalogue lacks %s", name)
		}
	}
	for _, tp := range cat.Topics {
		if strings.HasSuffix(tp.Name, "-table") && tp.Cleanup != Compact {
			t.Errorf("%s: group tables must be compacted", tp.Name)
		}
	}
	if r, _ := cat.Lookup(Rules); r.Cleanup != Compact {
		t.Error("rules must be compacted")
	}
}

func TestCatalogueRejectsCoPartitioningMismatches(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Catalogue)
		want   string
	}{
		{"partition count", func(c *Catalogue) { c.Topics[0].Partitions = 8 },
			"topic cdc.members: 8 partitions, but co-partitioned topics must have 16"},
		{"partitioner", func(c *Catalogue) { c.Topics[1].Partitioner = "fnv1a" },
			`topic cdc.items: partitioner "fnv1a", but co-partitioned topics must use murmur2`},
		{"member key not co-partitioned", func(c *Catalogue) { c.Topics[0].CoPartitioned = false },
			"topic cdc.members: keyed by member_id, so it must be co-partitioned"},
		{"duplicate", func(c *Catalogue) { c.Topics = append(c.Topics, c.Topics[0]) }, "topic cdc.members: declared twice"},
		{"cleanup", func(c *Catalogue) { c.Topics[2].Cleanup = "forever" }, `cleanup policy "forever"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cat := New(16, 3)
			tc.mutate(&cat)
			err := cat.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
