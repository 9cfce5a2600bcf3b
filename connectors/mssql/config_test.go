package mssql

import (
	"strings"
	"testing"

	"github.com/rtm-project/rtm/internal/kafka"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultTables()
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"defaults", Config{Kafka: kafka.Config{Brokers: []string{"b:9092"}}, Tables: ok}, nil},
		{"no brokers", Config{Tables: ok}, []string{"no Kafka brokers"}},
		{"every table problem", Config{Kafka: kafka.Config{Brokers: []string{"b"}}, Tables: []TableConfig{
			{Name: "x;drop", PrimaryKey: []string{"id"}, PartitionColumn: "other", Columns: []string{"name"}},
			ok[0], ok[0],
		}}, []string{`table name "x;drop" is not a plain identifier`,
			"primary-key column id is not among the tracked columns",
			`partition column "other" must be a primary-key column`,
			"table members configured twice"}},
		{"groups", Config{Kafka: kafka.Config{Brokers: []string{"b"}}, Tables: ok, Groups: [][]string{{"orders", "cart_items"}, {"items", "members"}}}, nil},
		{"bad groups", Config{Kafka: kafka.Config{Brokers: []string{"b"}}, Tables: ok, Groups: [][]string{{"orders", "nope"}, {}, {"orders", "items"}}},
			[]string{`group 1 names table "nope", which is not bridged`, "group 2 is empty", "table orders is in more than one group"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.withDefaults().Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestUnits: a group is polled as one unit where its first table is; the
// other tables alone; chunks default to MaxRows.
func TestUnits(t *testing.T) {
	cfg := Config{Tables: DefaultTables(), Groups: [][]string{{"cart_items", "orders"}}, MaxRows: 7}.withDefaults()
	var got []string
	for _, u := range cfg.units() {
		got = append(got, names(u))
	}
	if want := "members items favorites cart_items+orders"; strings.Join(got, " ") != want {
		t.Errorf("units %q, want %q", got, want)
	}
	if cfg.ResyncChunkRows != 7 {
		t.Errorf("ResyncChunkRows default %d, want MaxRows 7", cfg.ResyncChunkRows)
	}
}

// TestQueries pins the generated T-SQL (the one place it is built).
func TestQueries(t *testing.T) {
	fav := DefaultTables()[2]
	want := `SELECT TOP (@p2) WITH TIES CT.SYS_CHANGE_VERSION, CT.SYS_CHANGE_OPERATION, CASE WHEN T.[member_id] IS NULL THEN 0 ELSE 1 END AS row_present, CT.[member_id], CT.[item_id], T.[created_at]
FROM CHANGETABLE(CHANGES dbo.[favorites], @p1) AS CT
LEFT OUTER JOIN dbo.[favorites] AS T ON T.[member_id] = CT.[member_id] AND T.[item_id] = CT.[item_id]
WHERE CT.SYS_CHANGE_VERSION <= @p3
ORDER BY CT.SYS_CHANGE_VERSION`
	if got := qChanges(fav); got != want {
		t.Errorf("qChanges =\n%s\nwant\n%s", got, want)
	}
	for _, tt := range []struct{ name, got, want string }{
		{"qPage first", qPage(fav, false), `SELECT TOP (@p1) [member_id], [item_id], [created_at] FROM dbo.[favorites]
ORDER BY [member_id], [item_id]`},
		{"qPage after", qPage(fav, true), `SELECT TOP (@p1) [member_id], [item_id], [created_at] FROM dbo.[favorites]
WHERE ([member_id] > @p2) OR ([member_id] = @p2 AND [item_id] > @p3)
ORDER BY [member_id], [item_id]`},
		{"qMissing", qMissing(fav, 2), `SELECT K.n FROM (VALUES (1, @p1, @p2), (2, @p3, @p4)) AS K(n, [member_id], [item_id])
WHERE NOT EXISTS (SELECT 1 FROM dbo.[favorites] AS T WHERE T.[member_id] = K.[member_id] AND T.[item_id] = K.[item_id])
ORDER BY K.n`},
	} {
		if tt.got != tt.want {
			t.Errorf("%s =\n%s\nwant\n%s", tt.name, tt.got, tt.want)
		}
	}
}
