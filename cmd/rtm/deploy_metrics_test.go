package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

var (
	dashboardFiles = filepath.Join(repoRoot, "deploy", "grafana", "*.json")
	ruleFiles      = filepath.Join(repoRoot, "deploy", "prometheus", "*.yml")
	ruleTestFiles  = filepath.Join(repoRoot, "deploy", "prometheus", "tests", "*.yml")
)

// TestPrometheusRules runs promtool on the alert rules: `check rules`
// (syntax, PromQL, templates) and `test rules` (each alert fires on the
// series it is meant for). Debian's prometheus package ships promtool;
// .ci/run installs it.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install prometheus); the alert rules are not checked")
	}
	for _, args := range [][]string{{"check", "rules"}, {"test", "rules"}} {
		glob := ruleFiles
		if args[0] == "test" {
			glob = ruleTestFiles
		}
		files, _ := filepath.Glob(glob)
		if len(files) == 0 {
			t.Fatalf("no files match %s", glob)
		}
		out, err := exec.Command(promtool, append(args, files...)...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var (
	rtmMetric = regexp.MustCompile(`\brtm_[a-z0-9_]+\b`)
	// selector is any identifier followed by a label matcher: a metric.
	selector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)
)

// queriedMetrics are the sample names a PromQL expression reads: every
// rtm_* name, and any other name with a label matcher (which is then not
// one rtm exports: reported as such). Bare non-rtm names are PromQL
// functions and keywords; the dashboard and rules use no other metric.
func queriedMetrics(expr string) []string {
	names := rtmMetric.FindAllString(expr, -1)
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func TestQueriedMetrics(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.99, sum by (le, channel) (rate(rtm_e2e_seconds_bucket[10m]))) > 10`, []string{"rtm_e2e_seconds_bucket"}},
		{`time() - rtm_cdc_last_success_timestamp_seconds > 300`, []string{"rtm_cdc_last_success_timestamp_seconds"}},
		{`sum(rate(rtm_a_total{status="failed"}[5m])) / sum(rate(rtm_a_total[5m]))`, []string{"rtm_a_total"}},
		{`up{job="rtm"} == 0 and rtm_b`, []string{"rtm_b", "up"}},
		{`sum by (group) (delta(rtm_lag[10m])) > 0`, []string{"rtm_lag"}},
	} {
		if got := queriedMetrics(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// deployQueries maps each metric the dashboards and alert rules query to
// where it is queried, and each place to its expression.
func deployQueries(t *testing.T) (where map[string][]string, exprs map[string]string) {
	t.Helper()
	where, exprs = map[string][]string{}, map[string]string{}
	add := func(file, what, expr string) {
		exprs[filepath.Base(file)+" "+what+" "+expr] = expr
		for _, n := range queriedMetrics(expr) {
			where[n] = append(where[n], filepath.Base(file)+" "+what)
		}
	}
	dashboards, _ := filepath.Glob(dashboardFiles)
	for _, f := range dashboards {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				add(f, "panel "+p.Title, tg.Expr)
			}
		}
	}
	rules, _ := filepath.Glob(ruleFiles)
	for _, f := range rules {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				}
			}
		}
		if err := yaml.Unmarshal(data, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range r.Groups {
			for _, rule := range g.Rules {
				add(f, "alert "+rule.Alert+rule.Record, rule.Expr)
			}
		}
	}
	if len(dashboards) == 0 || len(rules) == 0 || len(where) == 0 {
		t.Fatalf("no queries found in %s and %s", dashboardFiles, ruleFiles)
	}
	return where, exprs
}

// sampleNames are the sample names of a text exposition (histograms as
// name_bucket, name_sum, name_count), each with the label names it has.
func sampleNames(exposition string) map[string]map[string]bool {
	names := map[string]map[string]bool{}
	for _, l := range strings.Split(exposition, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.IndexAny(l, "{ ")
		if i <= 0 {
			continue
		}
		if names[l[:i]] == nil {
			names[l[:i]] = map[string]bool{}
		}
		if l[i] == '{' {
			for _, m := range sampleLabel.FindAllStringSubmatch(l[i:strings.LastIndex(l, "}")+1], -1) {
				names[l[:i]][m[1]] = true
			}
		}
	}
	return names
}

var (
	sampleLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
	grouping    = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matcher     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
)

// queriedLabels are the label names an expression groups by or matches
// on.
func queriedLabels(expr string) []string {
	var out []string
	for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	for _, m := range matcher.FindAllStringSubmatch(expr, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// labelProblems reports the labels expr uses that none of its metrics
// has (a typo, or `by (stage)` on a metric labelled by group): the query
// would return one unlabelled series or nothing. instance and job are
// Prometheus's own.
func labelProblems(expr string, exported map[string]map[string]bool) []string {
	var errs []string
	for _, l := range queriedLabels(expr) {
		if l == "instance" || l == "job" {
			continue
		}
		found := false
		for _, n := range queriedMetrics(expr) {
			found = found || exported[n][l]
		}
		if !found {
			errs = append(errs, fmt.Sprintf("label %s is on none of %v", l, queriedMetrics(expr)))
		}
	}
	return errs
}

func TestLabelProblems(t *testing.T) {
	exported := sampleNames("# HELP x\nrtm_a_total{stage=\"filter\",topic=\"t\"} 1\nrtm_h_bucket{channel=\"line\",le=\"+Inf\"} 2\nrtm_g 3\n")
	for _, tc := range []struct {
		expr     string
		problems int
	}{
		{`sum by (stage, topic) (rate(rtm_a_total[5m]))`, 0},
		{`histogram_quantile(0.99, sum by (le, channel) (rate(rtm_h_bucket[5m])))`, 0},
		{`sum by (group) (rate(rtm_a_total[5m]))`, 1},
		{`rtm_a_total{status="failed"}`, 1},
		{`rtm_g == 0 and on (instance) rtm_a_total{stage!="x"}`, 0},
	} {
		if got := labelProblems(tc.expr, exported); len(got) != tc.problems {
			t.Errorf("%s: %q, want %d problems", tc.expr, got, tc.problems)
		}
	}
}

// TestDashboardAndAlertMetricsExist runs the whole system (`rtm dev`: the
// embedded broker, the simulated shop through the real CDC bridge, the
// collector, every stage, the sinks) in one process, so one /metrics
// serves every metric rtm has; drives it until deliveries and a dead
// letter happen; and requires every metric the Grafana dashboard and the
// alert rules query to be among the samples it serves. A metric that only
// appears with activity (a labelled counter) must appear within the run.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	queried, exprs := deployQueries(t)
	addr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rtmBin, "dev", "--data-dir", t.TempDir(), "--broker-addr", addr, "--http-addr", httpAddr,
		"--collector-addr", freeAddr(t), "--partitions", "4", "--members", "200", "--items", "50", "--step", "50ms",
		"--sink-smtp-addr", freeAddr(t), "--sink-http-addr", freeAddr(t), "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "RTM dev is running") {
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(90 * time.Second):
		t.Fatal("rtm dev did not start within 90s")
	}
	cl := testkit.Client(t, addr, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))

	// A dead letter: a record member-state cannot decode.
	produceLines(t, cl, topics.BehaviorEvents, "M-POISON\tnot json\n")
	// Deliveries whatever the hour: members on every partition for whom it
	// is noon favourite an item, whose price then drops, again on each
	// round (until a drop finds every stage's copy of the members).
	tz := simulator.NoonZone()
	version := time.Now().UnixNano()
	var rows, favs strings.Builder
	for _, m := range topics.PartitionKeys("MX-", 4) {
		version++
		rows.WriteString(cdcLine(t, "members", m, map[string]any{"member_id": m}, "i", version, topics.MemberRow{
			MemberID: m, Email: m + "@example.jp", MailOptIn: true, LineUserID: "U" + m, LineOptIn: true, Status: "active", Timezone: tz}))
		favs.WriteString(cdcLine(t, "favorites", m, map[string]any{"member_id": m, "item_id": "MX-I"}, "i", version,
			topics.FavoriteRow{MemberID: m, ItemID: "MX-I", CreatedAt: time.Now().UTC()}))
	}
	produceLines(t, cl, topics.CDCMembers, rows.String())
	produceLines(t, cl, topics.CDCFavorites, favs.String())
	price := 5000.0
	item := func(op string) string {
		version++
		return cdcLine(t, "items", "MX-I", map[string]any{"item_id": "MX-I"}, op, version, topics.ItemRow{
			ItemID: "MX-I", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: price, Stock: 5})
	}
	produceLines(t, cl, topics.CDCItems, item("i"))

	var missing []string
	start, fewest, settled := time.Now(), len(queried)+1, time.Duration(0)
	for deadline := start.Add(2 * time.Minute); ; {
		_, body, err := get("http://" + httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		exported := sampleNames(body)
		missing = missing[:0]
		for n := range queried {
			if exported[n] == nil {
				missing = append(missing, n)
			}
		}
		if len(missing) < fewest {
			fewest, settled = len(missing), time.Since(start)
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		price *= 0.5 // a price drop, each round
		produceLines(t, cl, topics.CDCItems, item("u"))
		time.Sleep(5 * time.Second)
	}
	t.Logf("%d of %d queried metrics served %v after the system started", len(queried)-fewest, len(queried), settled.Round(time.Second))
	slices.Sort(missing)
	_, body, err := get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exported := sampleNames(body)
	for where, expr := range exprs {
		served := true
		for _, n := range queriedMetrics(expr) {
			served = served && exported[n] != nil
		}
		if !served {
			continue // reported below
		}
		for _, e := range labelProblems(expr, exported) {
			t.Errorf("%s: %s", where, e)
		}
	}
	for _, n := range missing {
		t.Errorf("%s is queried (%s) but /metrics never served it", n, strings.Join(slices.Compact(queried[n]), "; "))
	}
	if len(missing) > 0 {
		t.Logf("missing: %s", strings.Join(missing, " "))
	}
}
