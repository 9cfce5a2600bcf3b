// Package rulestest provides rule tables and facts for tests and
// benchmarks, shared by the rules package and the grule comparison module
// (bench/grule) so that both evaluate exactly the same table.
package rulestest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/rtm-project/rtm/rules"
)

// Prefectures are the 47 prefectures of Japan.
var Prefectures = strings.Split("北海道,青森県,岩手県,宮城県,秋田県,山形県,福島県,茨城県,栃木県,群馬県,埼玉県,千葉県,東京都,神奈川県,新潟県,富山県,石川県,福井県,山梨県,長野県,岐阜県,静岡県,愛知県,三重県,滋賀県,京都府,大阪府,兵庫県,奈良県,和歌山県,鳥取県,島根県,岡山県,広島県,山口県,徳島県,香川県,愛媛県,高知県,福岡県,佐賀県,長崎県,熊本県,大分県,宮崎県,鹿児島県,沖縄県", ",")

// Statuses are member statuses used by FilterRule.
var Statuses = []string{"active", "suspended", "pending", "withdrawn"}

// FilterRule is row i of the benchmark filter table, in plain Go values, so
// that other engines can express the same rule.
type FilterRule struct {
	Name        string
	Status      string   // member.status == Status
	MinAge      int      // member.age >= MinAge
	Prefectures []string // member.prefecture in Prefectures
	MaxOrders   int      // member.orders_count < MaxOrders
	Exclude     bool
	Reason      string
}

// FilterRules returns n rules with four conditions each; the last is a
// catch-all with no conditions. Rules are deterministic.
func FilterRules(n int) []FilterRule {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]FilterRule, 0, n)
	for i := range n - 1 {
		fr := FilterRule{
			Name:      fmt.Sprintf("rule-%03d", i),
			Status:    Statuses[i%len(Statuses)],
			MinAge:    18 + i%50,
			MaxOrders: 1 + i%20,
			Exclude:   i%2 == 0,
			Reason:    fmt.Sprintf("理由 %d", i),
		}
		for range 3 {
			fr.Prefectures = append(fr.Prefectures, Prefectures[r.IntN(len(Prefectures))])
		}
		out = append(out, fr)
	}
	return append(out, FilterRule{Name: "default", Reason: "既定"})
}

// FilterSpec is FilterRules(n) as a first-hit filter table.
func FilterSpec(n int) rules.TableSpec {
	spec := rules.TableSpec{
		Name: "bench-filter", Kind: rules.KindFilter, HitPolicy: rules.HitFirst, Sheet: "Bench",
		Columns: []rules.Column{
			{Type: rules.ColName, Ref: "B5"},
			{Type: rules.ColCondition, Template: "member.status == $param", Ref: "C5"},
			{Type: rules.ColCondition, Template: "member.age >= $param", Ref: "D5"},
			{Type: rules.ColCondition, Template: "member.prefecture in $param", Ref: "E5"},
			{Type: rules.ColCondition, Template: "member.orders_count < $param", Ref: "F5"},
			{Type: rules.ColAction, Template: "exclude", Ref: "G5"},
			{Type: rules.ColAction, Template: "reason", Ref: "H5"},
		},
	}
	for i, fr := range FilterRules(n) {
		row := rules.Row{Row: 7 + i, Cells: []rules.Value{{V: fr.Name}}}
		if fr.Status == "" {
			row.Cells = append(row.Cells, rules.Value{}, rules.Value{}, rules.Value{}, rules.Value{})
		} else {
			row.Cells = append(row.Cells,
				rules.Value{V: fr.Status},
				rules.Value{V: float64(fr.MinAge)},
				rules.Value{V: strings.Join(fr.Prefectures, ",")},
				rules.Value{V: float64(fr.MaxOrders)})
		}
		row.Cells = append(row.Cells, rules.Value{V: fr.Exclude}, rules.Value{V: fr.Reason})
		spec.Rows = append(spec.Rows, row)
	}
	return spec
}

// Members returns n varied members: mostly active, spread over ages,
// prefectures and order counts, so most fall through many rules.
func Members(n int) []rules.Member {
	r := rand.New(rand.NewPCG(3, 4))
	out := make([]rules.Member, n)
	for i := range out {
		status := "active"
		if r.IntN(10) == 0 {
			status = Statuses[r.IntN(len(Statuses))]
		}
		out[i] = rules.Member{
			MemberID:    fmt.Sprintf("m-%06d", i),
			Email:       fmt.Sprintf("m%06d@example.jp", i),
			Status:      status,
			Age:         16 + r.IntN(70),
			Prefecture:  Prefectures[r.IntN(len(Prefectures))],
			OrdersCount: r.IntN(40),
			MailOptIn:   true,
			Reachable:   []string{rules.ChannelMail},
		}
	}
	return out
}
