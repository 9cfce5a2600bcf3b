// Command gen writes the example rule workbook (rtm-rules.xlsx).
//
//	go run ./rules/examples/gen -o rules/examples/rtm-rules.xlsx
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/xuri/excelize/v2"
)

// Table is one decision table, laid out exactly as the rules loader reads
// it: header rows, COLUMNS, templates, labels, rules.
type Table struct {
	Sheet, Name, Kind, HitPolicy, Description string
	Columns                                   []string // CONDITION, ACTION, NAME, DESCRIPTION
	Templates                                 []string
	Labels                                    []string
	Rows                                      [][]any // nil = empty cell
}

// X marks an empty cell (the condition does not apply).
var X any

func tables() []Table {
	return []Table{
		{
			Sheet: "Campaigns", Name: "campaigns", Kind: "campaign", HitPolicy: "first",
			Description: "どのイベントでどのキャンペーンを出すか (which campaign an event triggers)",
			Columns:     []string{"NAME", "CONDITION", "CONDITION", "CONDITION", "CONDITION", "ACTION", "ACTION", "ACTION", "ACTION", "ACTION", "ACTION", "ACTION", "DESCRIPTION"},
			Templates: []string{"", "event.type == $param", "event.drop_pct >= $param", "event.new_price >= $param", "event.category in $param",
				"campaign", "audience", "priority", "template", "timing", "expires_after", "holdout", ""},
			Labels: []string{"ルール名", "イベント種別", "値下げ率(%)以上", "値下げ後価格(円)以上", "カテゴリ", "キャンペーン", "対象", "優先度", "テンプレート", "タイミング", "有効期限", "ホールドアウト(%)", "説明"},
			Rows: [][]any{
				{"大幅値下げ", "price_drop", 30, 1000, X, "price-drop-big", "favorites_of_item", 90, "price-drop", "now", "6h", X, "30%以上の値下げはすぐ LINE で"},
				{"家具・キッチン値下げ", "price_drop", 10, 3000, "キッチン,インテリア", "price-drop-home", "favorites_of_item", 75, "price-drop", "best_hour", "12h", 10, "高額カテゴリは 10% から。10% は効果測定のため送らない (rtm report)"},
				{"値下げ", "price_drop", 15, 500, X, "price-drop", "favorites_of_item", 70, "price-drop", "best_hour", "12h", X, ""},
				{"再入荷", "back_in_stock", X, X, X, "back-in-stock", "favorites_of_item", 80, "back-in-stock", "now", "24h", X, "在庫が戻ったらお気に入り登録者へ"},
				{"カゴ落ち", "cart_abandoned", X, X, X, "cart-reminder", "member", 60, "cart-reminder", "best_hour", "2d", X, "カートに入れたまま 1 時間"},
			},
		},
		{
			Sheet: "Filters", Name: "member-filters", Kind: "filter", HitPolicy: "first",
			Description: "配信対象から外す会員 (members who must not receive the offer)",
			Columns:     []string{"NAME", "CONDITION", "CONDITION", "CONDITION", "CONDITION", "CONDITION", "ACTION", "ACTION"},
			Templates: []string{"", "member.is_debug == $param", "member.status in $param", "(member.mail_opt_in or member.line_opt_in or member.push_opt_in) == $param",
				"campaign.id == $param", "member.orders_count < $param", "exclude", "reason"},
			Labels: []string{"ルール名", "デバッグ会員", "会員ステータス", "いずれかのチャネルに同意", "キャンペーン", "購入回数未満", "除外", "理由"},
			Rows: [][]any{
				{"デバッグ会員", true, X, X, X, X, true, "debug user"},
				{"退会・停止会員", X, "withdrawn,suspended", X, X, X, true, "退会済みまたは停止中"},
				{"配信停止", X, X, false, X, X, true, "全チャネル配信停止 (opted out)"},
				{"カゴ落ちは購入者のみ", X, X, X, "cart-reminder", 1, true, "カゴ落ち通知は購入経験のある会員のみ"},
				{"既定", X, X, X, X, X, false, ""},
			},
		},
		{
			Sheet: "Channels", Name: "channels", Kind: "channel", HitPolicy: "first",
			Description: "チャネルの優先順位 (channel preference)",
			Columns:     []string{"NAME", "CONDITION", "CONDITION", "ACTION", "ACTION"},
			Templates:   []string{"", "campaign.id == $param", "member.age < $param", "channels", "strategy"},
			Labels:      []string{"ルール名", "キャンペーン", "年齢未満", "チャネル順", "戦略"},
			Rows: [][]any{
				{"カゴ落ちはメール", "cart-reminder", X, "MAIL,LINE", "fixed"},
				{"再入荷はプッシュ", "back-in-stock", X, "PUSH,LINE,MAIL", "fixed"},
				{"若年層", X, 30, "LINE,PUSH,INAPP,MAIL", "best"},
				{"既定", X, X, "MAIL,LINE,PUSH,INAPP", "best"},
			},
		},
		{
			Sheet: "Timing", Name: "timing", Kind: "timing", HitPolicy: "first",
			Description: "配信しない時間帯と上限 (quiet hours and frequency caps)",
			Columns:     []string{"NAME", "CONDITION", "CONDITION", "ACTION", "ACTION", "ACTION", "ACTION"},
			Templates:   []string{"", "campaign.id == $param", "campaign.priority >= $param", "quiet_hours", "cap_day", "cap_week", "cap_campaign_day"},
			Labels:      []string{"ルール名", "キャンペーン", "優先度以上", "配信停止時間帯", "1日上限", "1週上限", "キャンペーン毎1日上限"},
			Rows: [][]any{
				{"再入荷は早めに", "back-in-stock", X, "23:00-07:00", 5, 15, 2},
				{"高優先度", X, 85, "22:00-08:00", 4, 12, 1},
				{"既定", X, X, "22:00-08:00", 3, 10, 1},
			},
		},
	}
}

// Template is one row of the template table: the variant of message ID
// for one channel.
type Template struct{ ID, Channel, Subject, Body, AltText, URL string }

// templates holds one row per (message, channel), as a marketer writes
// content: the campaign tables name the message (price-drop), the channel
// stage picks among the channels it has a row for, and render uses that
// row. Every message here has all four channels; leaving one out keeps
// the channel stage from choosing it for that message.
var templates = []Template{
	{"price-drop", "LINE", "",
		"お気に入りの「{{.event.brand}}」の商品が {{.event.drop_pct | pct}} 値下げ！\n{{.event.old_price | yen}} → {{.event.new_price | yen}}",
		"お気に入り商品が値下げされました", "https://shop.example.jp/items/{{.event.item_id}}?utm_source=line&utm_campaign={{.campaign.id}}"},
	{"price-drop", "MAIL", "【値下げ】{{.event.brand}}の商品が{{.event.new_price | yen}}になりました",
		"いつもご利用ありがとうございます。\nお気に入りに登録された商品が値下げされました。\n\n{{.event.old_price | yen}} → {{.event.new_price | yen}} ({{.event.drop_pct | pct}} OFF)\n",
		"", "https://shop.example.jp/items/{{.event.item_id}}?utm_source=mail&utm_campaign={{.campaign.id}}"},
	{"price-drop", "PUSH", "お気に入り商品が値下げ", "「{{.event.brand}}」の商品が {{.event.drop_pct | pct}} 値下げ: {{.event.new_price | yen}}", "",
		"https://shop.example.jp/items/{{.event.item_id}}?utm_source=push&utm_campaign={{.campaign.id}}"},
	{"price-drop", "INAPP", "お気に入り商品が値下げされました", "{{.event.brand}}: {{.event.old_price | yen}} → {{.event.new_price | yen}}", "",
		"https://shop.example.jp/items/{{.event.item_id}}?utm_source=inapp&utm_campaign={{.campaign.id}}"},
	{"back-in-stock", "PUSH", "再入荷しました", "お気に入りの{{.event.brand}}の商品が再入荷しました。在庫わずか（{{.event.stock}}点）", "",
		"https://shop.example.jp/items/{{.event.item_id}}"},
	{"back-in-stock", "LINE", "", "お気に入りの{{.event.brand}}の商品が再入荷しました（残り{{.event.stock}}点）", "再入荷のお知らせ",
		"https://shop.example.jp/items/{{.event.item_id}}?utm_source=line"},
	{"back-in-stock", "MAIL", "【再入荷】{{.event.brand}}の商品が入荷しました", "お気に入りに登録された商品が再入荷しました。\n在庫わずか（{{.event.stock}}点）です。\n", "",
		"https://shop.example.jp/items/{{.event.item_id}}?utm_source=mail"},
	{"back-in-stock", "INAPP", "再入荷しました", "{{.event.brand}}の商品が再入荷しました", "", "https://shop.example.jp/items/{{.event.item_id}}"},
	{"cart-reminder", "MAIL", "カートに商品が残っています",
		"カートに入れた商品のお手続きがまだ完了していません。\n{{if .member.segments}}会員様限定のご案内もございます。{{end}}",
		"", "https://shop.example.jp/cart"},
	{"cart-reminder", "LINE", "", "カートに入れた商品が残っています。お手続きはこちらから。", "カートのお知らせ", "https://shop.example.jp/cart?utm_source=line"},
	{"cart-reminder", "PUSH", "カートに商品が残っています", "お手続きがまだ完了していません", "", "https://shop.example.jp/cart?utm_source=push"},
	{"cart-reminder", "INAPP", "カートに商品が残っています", "お手続きがまだ完了していません", "", "https://shop.example.jp/cart"},
}

func main() {
	out := flag.String("o", "rtm-rules.xlsx", "output file")
	flag.Parse()
	if err := write(*out); err != nil {
		slog.Error("writing workbook", "err", err)
		os.Exit(1)
	}
}

func write(path string) error {
	f := excelize.NewFile()
	defer f.Close()
	// A notes sheet first: A1 is not RuleTable, so the loader ignores it.
	if err := f.SetSheetName("Sheet1", "README"); err != nil {
		return err
	}
	notes := []string{
		"RTM rule workbook (例)",
		"シートの A1 が RuleTable のシートだけがルール表として読み込まれます。",
		"Only sheets whose A1 is RuleTable are rule tables; this sheet is ignored.",
		"Format: see rules/README.md",
	}
	for i, n := range notes {
		if err := f.SetCellValue("README", cell(1, i+1), n); err != nil {
			return err
		}
	}
	for _, t := range tables() {
		if err := writeTable(f, t); err != nil {
			return fmt.Errorf("sheet %s: %w", t.Sheet, err)
		}
	}
	if err := writeTemplates(f); err != nil {
		return fmt.Errorf("sheet Templates: %w", err)
	}
	return f.SaveAs(path)
}

func cell(col, row int) string {
	s, _ := excelize.CoordinatesToCellName(col, row)
	return s
}

func writeHeader(f *excelize.File, sheet, name, kind, policy, desc string) (int, error) {
	if _, err := f.NewSheet(sheet); err != nil {
		return 0, err
	}
	header := [][2]string{{"RuleTable", name}, {"Kind", kind}}
	if policy != "" {
		header = append(header, [2]string{"HitPolicy", policy})
	}
	if desc != "" {
		header = append(header, [2]string{"Description", desc})
	}
	for i, h := range header {
		if err := f.SetSheetRow(sheet, cell(1, i+1), &[]any{h[0], h[1]}); err != nil {
			return 0, err
		}
	}
	_ = f.SetColWidth(sheet, "A", "A", 12)
	_ = f.SetColWidth(sheet, "B", "M", 22)
	return len(header) + 2, nil // one blank row before COLUMNS
}

func writeTable(f *excelize.File, t Table) error {
	r, err := writeHeader(f, t.Sheet, t.Name, t.Kind, t.HitPolicy, t.Description)
	if err != nil {
		return err
	}
	rows := [][]any{
		prepend("COLUMNS", t.Columns),
		prepend("", t.Templates),
		prepend("", t.Labels),
	}
	for _, row := range t.Rows {
		rows = append(rows, append([]any{nil}, row...))
	}
	for i, row := range rows {
		if err := f.SetSheetRow(t.Sheet, cell(1, r+i), &row); err != nil {
			return err
		}
	}
	return nil
}

func writeTemplates(f *excelize.File) error {
	r, err := writeHeader(f, "Templates", "templates", "template", "", "メッセージ本文 (message templates)")
	if err != nil {
		return err
	}
	rows := [][]any{{"COLUMNS", "id", "channel", "subject", "body", "alt_text", "url"}}
	for _, t := range templates {
		rows = append(rows, []any{nil, t.ID, t.Channel, t.Subject, t.Body, t.AltText, t.URL})
	}
	for i, row := range rows {
		if err := f.SetSheetRow("Templates", cell(1, r+i), &row); err != nil {
			return err
		}
	}
	return nil
}

func prepend(a string, s []string) []any {
	out := []any{a}
	for _, x := range s {
		out = append(out, x)
	}
	return out
}
