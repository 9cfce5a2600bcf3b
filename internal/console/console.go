// Package console is the marketers' web console: the pipeline's health
// (each stage's readiness, input rate and consumer lag), the decision
// tables (versions, row-level diffs, upload with the errors shown on
// their cells, publish after a simulate summary, roll back), a member's
// explanation and campaign results.
//
// It is one http.Handler mounted at Prefix, built from explicit
// dependencies, so that `rtm console` (its own process, reading the
// stages' /readyz over HTTP) and `rtm dev` (on its ops server, reading its
// in-process health) serve the same thing. Pages are server-rendered
// html/template with a little embedded CSS and no JavaScript: every action
// is a plain form, which keeps the console usable without a Node build
// step and lets a strict Content-Security-Policy forbid scripts outright.
//
// Every request but the sign-in page needs a signed session; every POST
// needs the session's CSRF token; every change (publish, rollback) is
// published with the signed-in user as its author and recorded as a log
// line and a metric.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/lag"
	"github.com/rtm-project/rtm/rules"
)

// Prefix is the path the console is served under, in `rtm dev` and in
// `rtm console` alike.
const Prefix = "/console"

// SimulateFunc tries candidate tables (a whole upload) on recorded
// traffic and returns a plain-text summary a marketer reads before
// publishing. It is a function, not an import, so that the console does
// not depend on how simulation is done.
type SimulateFunc func(ctx context.Context, candidate []rules.TableSpec) (string, error)

// ReportFunc returns a campaign's results (sends, opens, clicks,
// conversions per group, with the hold-out uplift) as plain text.
type ReportFunc func(ctx context.Context, campaign string) (string, error)

// NewClientFunc makes a Kafka client of the cluster (kafka.Config's
// NewClient): the console makes its own, each with the options it needs.
type NewClientFunc func(opts ...kgo.Opt) (*kgo.Client, error)

// Config is everything the console depends on.
type Config struct {
	// AdminToken is the password or token a sign-in must give.
	AdminToken string
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// NewClient makes clients of the cluster the rules and the stages
	// are on.
	NewClient NewClientFunc
	// Partitions is the co-partitioned topics' partition count (for the
	// member lookup).
	Partitions int32
	// Groups are the stages' consumer groups, in pipeline order.
	Groups []string
	// PollInterval is how often the groups' lag and offsets are read.
	PollInterval time.Duration
	// Readiness reports the stage processes' readiness.
	Readiness Readiness
	Simulate  SimulateFunc
	Report    ReportFunc
	Log       *slog.Logger
	// Registerer, when set, gets the console's metrics.
	Registerer prometheus.Registerer
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Console is the console's handler. Run polls the stages' lag while it
// serves; Close releases its clients.
type Console struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	pages   map[string]*template.Template
	keys    sessionKeys
	limiter *limiter
	metrics metrics

	// pub publishes and rolls back (a transactional producer; Publish
	// refuses any other). publishMu keeps its transactions one at a
	// time.
	pub       *kgo.Client
	publishMu sync.Mutex
	lagClient *kgo.Client
	lags      *lag.Poller
	samples   samples
	uploads   *uploads
	// simulating admits one simulation at a time: each holds the member
	// table in memory, in rtm dev beside every stage.
	simulating chan struct{}
}

//go:embed templates static
var assets embed.FS

// transactionalID is the console's publisher: a second console fences the
// first's open transaction instead of interleaving with it.
const transactionalID = "rtm-console-rules"

// New builds the console. It does not contact the cluster: pages that
// need it report its errors.
func New(cfg Config) (*Console, error) {
	if len(cfg.AdminToken) == 0 {
		return nil, errors.New("console: no administrator token (console.admin_token)")
	}
	if cfg.NewClient == nil || cfg.Readiness == nil || cfg.Simulate == nil || cfg.Report == nil {
		return nil, errors.New("console: NewClient, Readiness, Simulate and Report are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	c := &Console{cfg: cfg, log: cfg.Log, now: cfg.Now, keys: newSessionKeys(cfg.AdminToken), uploads: newUploads(), simulating: make(chan struct{}, 1)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.limiter = newLimiter(c.now)
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if c.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if c.pub, err = cfg.NewClient(kgo.TransactionalID(transactionalID), kgo.TransactionTimeout(30*time.Second)); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if c.lagClient, err = cfg.NewClient(); err != nil {
		c.pub.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	// A group not yet created is shown as "—": not worth a warning each poll.
	c.lags = lag.New(c.lagClient, cfg.Groups, cfg.PollInterval, nil)
	c.routes()
	return c, nil
}

// Close releases the console's Kafka clients.
func (c *Console) Close() {
	c.pub.Close()
	c.lagClient.Close()
}

// Run reads the stages' lag and offsets every PollInterval until ctx is
// done, keeping the last two readings for the pipeline page's rates.
func (c *Console) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, min(c.cfg.PollInterval, 10*time.Second))
		if err := c.lags.Poll(pctx); err != nil && ctx.Err() == nil {
			c.log.Warn("console: reading consumer lag", "err", err)
		}
		cancel()
		at, totals := c.lags.Totals()
		c.samples.add(at, totals)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	m.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+Prefix+"/login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"/login", c.login)
	authed := func(pattern string, h func(http.ResponseWriter, *http.Request, *session)) {
		m.Handle(pattern, c.requireSession(h))
	}
	authed("POST "+Prefix+"/logout", c.logout)
	authed("GET "+Prefix+"/{$}", c.pipelinePage)
	authed("GET "+Prefix+"/rules", c.rulesPage)
	authed("POST "+Prefix+"/rules/upload", c.upload)
	authed("GET "+Prefix+"/rules/upload/{id}", c.reviewPage)
	authed("POST "+Prefix+"/rules/upload/{id}/publish", c.publish)
	authed("GET "+Prefix+"/rules/table/{name}", c.tablePage)
	authed("GET "+Prefix+"/rules/table/{name}/diff", c.versionDiffPage)
	authed("GET "+Prefix+"/rules/table/{name}/rollback", c.rollbackPage)
	authed("POST "+Prefix+"/rules/table/{name}/rollback", c.rollback)
	authed("GET "+Prefix+"/members", c.memberPage)
	authed("GET "+Prefix+"/campaigns", c.campaignsPage)
	c.mux = m
}

// ServeHTTP serves the console with headers that forbid scripts, framing
// and caching of its pages.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"short": func(s string) string {
			if len(s) > 12 {
				return s[:12]
			}
			return s
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"prefix": func() string { return Prefix },
		"path":   url.PathEscape,
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// page is what every page template gets: the signed-in user, the form
// token, the active tab, and the page's own data.
type page struct {
	Title string
	Tab   string
	User  string
	CSRF  string
	Data  any
}

// render writes a page with status (0: 200). A template error is a bug,
// logged and answered with 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, status int, s *session, name, title, tab string, data any) {
	p := page{Title: title, Tab: tab, Data: data}
	if s != nil {
		p.User, p.CSRF = s.User, c.keys.csrf(s)
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: rendering page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if status != 0 {
		w.WriteHeader(status)
	}
	w.Write(buf.Bytes())
}

// metrics count sign-ins and changes by result.
type metrics struct {
	signins *prometheus.CounterVec
	changes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		signins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_console_signins_total",
			Help: "Console sign-in attempts by result: ok, refused (wrong token), throttled (too many recent failures from the address)."},
			[]string{"result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_console_changes_total",
			Help: "Rule changes made in the console by action (publish, rollback) and result (ok, failed, stale)."},
			[]string{"action", "result"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.signins, m.changes} {
			if err := reg.Register(col); err != nil {
				return m, fmt.Errorf("console metrics: %w", err)
			}
		}
	}
	return m, nil
}

// audit records a change with who made it: a log line an auditor can
// search by user, and the count of changes by action and result.
func (c *Console) audit(r *http.Request, s *session, action, result string, attrs ...any) {
	c.metrics.changes.WithLabelValues(action, result).Inc()
	attrs = append([]any{"action", action, "result", result, "user", s.User, "remote", clientIP(r)}, attrs...)
	if result == "ok" {
		c.log.Info("console change", attrs...)
		return
	}
	c.log.Warn("console change", attrs...)
}

// kafkaTimeout bounds the cluster reads and writes of one request.
const kafkaTimeout = 30 * time.Second
