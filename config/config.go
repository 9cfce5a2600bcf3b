// Package config is RTM's one configuration: documented defaults, overridden
// by a YAML file, then by RTM_* environment variables, then by command-line
// flags. Every setting is declared once, in Fields, which drives all three
// sources and the `rtm config` listing.
//
// Settings belong to groups, and a command binds only the groups it reads
// (Bind), so `rtm rules validate --help` shows no channel or SQL Server
// flags, and a bad value in a setting a command does not read cannot stop
// it. Flags are typed: a bad value is refused with the flag's name. Secrets
// (tokens, passwords, the DSN, the tracking secret, API keys) have no flag:
// they come from the YAML file, from RTM_X, or from a file named by
// RTM_X_FILE, so they never show in the process list.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/rtm-project/rtm/broker"
	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/topics"
)

// Config is every setting of the rtm binary.
type Config struct {
	// Brokers are the Kafka bootstrap servers.
	Brokers []string `yaml:"brokers"`
	// Kafka is how every client authenticates and encrypts (TLS, SASL).
	Kafka kafka.Config `yaml:"kafka"`
	// DataDir holds local state: DataDir/<instance_id>/ for the stages'
	// Pebble stores, DataDir/kafka for the embedded broker.
	DataDir string `yaml:"data_dir"`
	// InstanceID names this process among the instances of its stages: it
	// is the Kafka static group membership ID (group.instance.id), so a
	// restart inside the session timeout does not rebalance the group, and
	// the directory of its local state. Default: the host name (a
	// StatefulSet pod name is stable across restarts).
	InstanceID string `yaml:"instance_id"`
	// Partitions is the partition count of every co-partitioned topic.
	Partitions int32 `yaml:"partitions"`
	// Replication is the replication factor for new topics. It is lowered to
	// the cluster size, with a warning, on smaller clusters (the embedded
	// broker has one).
	Replication int16  `yaml:"replication"`
	LogLevel    string `yaml:"log_level"`
	LogFormat   string `yaml:"log_format"`
	// HTTPAddr serves /healthz, /readyz and /metrics (and, for the inbox
	// stage, the inbox API).
	HTTPAddr string `yaml:"http_addr"`
	// ShutdownTimeout bounds a graceful stop: past it the process exits
	// non-zero without marking its stores clean.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxFailures is how many consecutive failures of one stage end the
	// process (non-zero), so its orchestrator restarts it. 0: never.
	MaxFailures int `yaml:"max_failures"`
	// StateCacheBytes is the Pebble block cache every stage of the process
	// shares: data, index and bloom-filter blocks of the local tables. A
	// point read (a join) that finds its blocks here reads no file.
	// Memtables are not taken out of it: each open store adds room for
	// its own (processors/state/cacheroom.go).
	StateCacheBytes int64 `yaml:"state_cache_bytes"`
	// CartWindow is how long a cart waits for an order before it counts as
	// abandoned.
	CartWindow time.Duration `yaml:"cart_window"`
	// ConversionWindow is how long after a sent or held_out delivery an
	// order counts as its conversion (member-state; rtm report).
	ConversionWindow time.Duration `yaml:"conversion_window"`
	// LagInterval is how often a stage process reads its groups' consumer
	// lag (rtm_consumer_lag_records): a few requests to the cluster per
	// round, whatever the number of partitions.
	LagInterval time.Duration `yaml:"lag_interval"`
	Broker      broker.Config `yaml:"broker"`

	// TrackingBase is the public URL of the collector, for tracked links
	// and open pixels; TrackingSecret signs them (the render stage and the
	// collector must share it; at least 32 bytes).
	TrackingBase   string `yaml:"tracking_base"`
	TrackingSecret string `yaml:"tracking_secret"`
	// TrackingOldSecrets still open tokens sealed before a rotation; drop
	// one (retire it) once TrackingTTL has passed since it last signed.
	TrackingOldSecrets []string `yaml:"tracking_old_secrets"`
	// TrackingTTL is how long rendered links, pixels and unsubscribe
	// links keep working.
	TrackingTTL time.Duration `yaml:"tracking_ttl"`
	// Inbox is how the inbox API verifies the shop's member tokens.
	Inbox Inbox `yaml:"inbox"`
	// Collector is the behaviour collector (`rtm collect`).
	Collector Collector `yaml:"collector"`
	// MSSQLDSN is the SQL Server the CDC bridge reads (`rtm cdc`).
	MSSQLDSN string `yaml:"mssql_dsn"`
	// Channels configures rendering and the channel adapters.
	Channels Channels `yaml:"channels"`
	// Sinks are the local protocol sinks (`rtm sinks`, `rtm dev`).
	Sinks sinks.Config `yaml:"sinks"`
	// Console is the marketers' web console (`rtm console`, `rtm dev`).
	Console Console `yaml:"console"`
}

// Console is the marketers' web console's settings. It is served on
// http_addr next to /healthz, /readyz and /metrics, under /console/.
type Console struct {
	// AdminToken is the administrator password or token every sign-in
	// gives (with a user name, recorded as the author of each change).
	AdminToken string `yaml:"admin_token"`
	// StageURLs are the base URLs of the stage processes' ops servers
	// (their http_addr); the pipeline page reads each one's /readyz.
	StageURLs []string `yaml:"stage_urls"`
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// PollInterval is how often the console reads the stages' consumer
	// lag and offsets; its rates are the difference of two readings.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// Collector is the behaviour collector's settings.
type Collector struct {
	Addr string `yaml:"addr"`
	// APIKeys are the accepted X-API-Key values of POST /v1/events
	// (several during a rotation).
	APIKeys       []string `yaml:"api_keys"`
	MaxBodyBytes  int64    `yaml:"max_body_bytes"`
	MaxEvents     int      `yaml:"max_events"`
	RatePerSecond float64  `yaml:"rate_per_second"`
	Burst         int      `yaml:"burst"`
	TrackingRate  float64  `yaml:"tracking_rate"`
	TrackingBurst int      `yaml:"tracking_burst"`
}

// Inbox is the inbox API's member-token verification (JWT).
type Inbox struct {
	JWT struct {
		Issuer   string `yaml:"issuer"`
		Audience string `yaml:"audience"`
		// HS256Keys are "kid:secret"; PublicKeyFiles "kid:path.pem".
		HS256Keys      []string `yaml:"hs256_keys"`
		PublicKeyFiles []string `yaml:"public_key_files"`
	} `yaml:"jwt"`
}

// Channels is the delivery side: who mail comes from, and where each
// channel's API is.
type Channels struct {
	MailFrom          string              `yaml:"mail_from"`
	UnsubscribeMailto string              `yaml:"unsubscribe_mailto"`
	SMTP              channels.SMTPConfig `yaml:"smtp"`
	LINE              channels.LineConfig `yaml:"line"`
	FCM               channels.FCMConfig  `yaml:"fcm"`
	// HTTPConnections sizes the LINE and FCM adapters' connection pools;
	// 0 takes the most deliveries one send instance makes at once
	// (SendConcurrency per partition, every partition).
	HTTPConnections int `yaml:"http_connections"`
	// SendConcurrency is how many deliveries of one partition the send
	// stage has with their channels at once (a member's still go one at
	// a time, in order); 0 takes send.DefaultConcurrency.
	SendConcurrency int `yaml:"send_concurrency"`
}

// MinSecretBytes is the shortest secret accepted anywhere: tracking
// secrets, API keys, HS256 inbox keys.
const MinSecretBytes = tracking.MinSecretBytes

// Defaults returns the documented defaults.
func Defaults() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "rtm"
	}
	c := Config{
		Brokers:         []string{"127.0.0.1:9092"},
		DataDir:         "./var",
		InstanceID:      host,
		Partitions:      topics.DefaultPartitions,
		Replication:     3,
		LogLevel:        "info",
		LogFormat:       "text",
		HTTPAddr:        "127.0.0.1:8080",
		ShutdownTimeout: 30 * time.Second,
		MaxFailures:     5,
		StateCacheBytes: 256 << 20, // stage.DefaultBlockCacheSize
		CartWindow:      time.Hour,
		LagInterval:     15 * time.Second,
		TrackingBase:    "http://127.0.0.1:8081",
		TrackingTTL:     90 * 24 * time.Hour,
		Collector: Collector{Addr: "127.0.0.1:8081", MaxBodyBytes: 1 << 20, MaxEvents: 1000, RatePerSecond: 500, Burst: 1000,
			TrackingRate: 10, TrackingBurst: 50},
		Channels: Channels{
			MailFrom:          "RTM Shop <noreply@shop.example.jp>",
			UnsubscribeMailto: "unsubscribe@shop.example.jp",
			SMTP:              channels.SMTPDefaults(),
			LINE:              channels.LineDefaults(),
			FCM:               channels.FCMDefaults(),
		},
		Broker:  broker.Defaults(),
		Sinks:   sinks.Defaults(),
		Console: Console{SessionTTL: 12 * time.Hour, PollInterval: 10 * time.Second},
	}
	c.Inbox.JWT.Audience = "rtm-inbox"
	c.ConversionWindow = 7 * 24 * time.Hour // member.DefaultConversionWindow
	return c
}

// TrackingKeys is the keyring of tracking tokens: tracking_secret seals,
// it and tracking_old_secrets open.
func (c Config) TrackingKeys() (*tracking.Keyring, error) {
	var old [][]byte
	for _, s := range c.TrackingOldSecrets {
		old = append(old, []byte(s))
	}
	return tracking.NewKeyring([]byte(c.TrackingSecret), old...)
}

// KafkaConfig is the one client configuration every Kafka client uses.
func (c Config) KafkaConfig() kafka.Config {
	k := c.Kafka
	k.Brokers = c.Brokers
	return k
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if c.InstanceID == "" || strings.ContainsAny(c.InstanceID, `/\`) || c.InstanceID == "." || c.InstanceID == ".." {
		errs = append(errs, fmt.Errorf("instance_id: %q must be a non-empty name without slashes", c.InstanceID))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions: %d must be at least 1", c.Partitions))
	}
	if c.Replication < 1 {
		errs = append(errs, fmt.Errorf("replication: %d must be at least 1", c.Replication))
	}
	if _, err := c.Level(); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format: %q is not text or json", c.LogFormat))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %v must be positive", c.ShutdownTimeout))
	}
	if c.StateCacheBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("state_cache_bytes: %d is below 1 MiB", c.StateCacheBytes))
	}
	if c.MaxFailures < 0 {
		errs = append(errs, fmt.Errorf("max_failures: %d must not be negative", c.MaxFailures))
	}
	if c.LagInterval <= 0 {
		errs = append(errs, fmt.Errorf("lag_interval: %v must be positive", c.LagInterval))
	}
	if c.CartWindow <= 0 {
		errs = append(errs, fmt.Errorf("cart_window: %v must be positive", c.CartWindow))
	}
	if c.ConversionWindow <= 0 {
		errs = append(errs, fmt.Errorf("conversion_window: %v must be positive", c.ConversionWindow))
	}
	if c.Broker.CleanerInterval <= 0 {
		errs = append(errs, fmt.Errorf("broker.cleaner_interval: %v must be positive", c.Broker.CleanerInterval))
	}
	short := func(name, s string) {
		if len(s) < MinSecretBytes {
			errs = append(errs, fmt.Errorf("%s: has %d bytes; use at least %d random bytes", name, len(s), MinSecretBytes))
		}
	}
	if c.TrackingSecret != "" {
		short("tracking_secret", c.TrackingSecret)
	}
	for i, s := range c.TrackingOldSecrets {
		short(fmt.Sprintf("tracking_old_secrets[%d]", i), s)
	}
	if c.TrackingTTL <= 0 {
		errs = append(errs, fmt.Errorf("tracking_ttl: %v must be positive", c.TrackingTTL))
	}
	if c.Channels.SendConcurrency < 0 {
		errs = append(errs, fmt.Errorf("channels.send_concurrency: %d must not be negative (0 takes %d)", c.Channels.SendConcurrency, send.DefaultConcurrency))
	}
	if c.Channels.HTTPConnections < 0 {
		errs = append(errs, fmt.Errorf("channels.http_connections: %d must not be negative (0 takes the partition count)", c.Channels.HTTPConnections))
	}
	if c.Channels.SMTP.PoolSize < 1 {
		errs = append(errs, fmt.Errorf("channels.smtp.pool_size: %d must be at least 1", c.Channels.SMTP.PoolSize))
	}
	for i, k := range c.Collector.APIKeys {
		short(fmt.Sprintf("collector.api_keys[%d]", i), k)
	}
	if c.Console.AdminToken != "" {
		short("console.admin_token", c.Console.AdminToken)
	}
	if c.Console.SessionTTL <= 0 {
		errs = append(errs, fmt.Errorf("console.session_ttl: %v must be positive", c.Console.SessionTTL))
	}
	if c.Console.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("console.poll_interval: %v must be positive", c.Console.PollInterval))
	}
	for i, k := range c.Inbox.JWT.HS256Keys {
		_, secret, _ := strings.Cut(k, ":")
		short(fmt.Sprintf("inbox.jwt.hs256_keys[%d] (kid:secret)", i), secret)
	}
	return errors.Join(errs...)
}

// Level parses LogLevel.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// Logger returns the process logger.
func (c Config) Logger() *slog.Logger {
	l, _ := c.Level()
	opts := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// HTTPConnections is the LINE and FCM adapters' connection pool size.
func (c Config) HTTPConnections() int {
	if n := c.Channels.HTTPConnections; n > 0 {
		return n
	}
	return int(c.Partitions) * c.SendConcurrency()
}

// SendConcurrency is the send stage's deliveries in flight per partition.
func (c Config) SendConcurrency() int {
	if n := c.Channels.SendConcurrency; n > 0 {
		return n
	}
	return send.DefaultConcurrency
}

// Catalogue returns the topic catalogue for this configuration, with
// replication as configured (see EffectiveReplication for the cluster cap).
func (c Config) Catalogue() topics.Catalogue { return topics.New(c.Partitions, c.Replication) }

// Binding is the settings one command reads: its flags are registered on
// the command's flag set, and Load applies only those groups' environment
// variables and flags.
type Binding struct {
	fs     *pflag.FlagSet
	groups []Group
}

// Bind registers on fs a flag for every non-secret setting of groups (and
// --config). GroupLog is always bound.
func Bind(fs *pflag.FlagSet, groups ...Group) *Binding {
	groups = append([]Group{GroupLog}, groups...)
	if fs.Lookup("config") == nil {
		fs.String("config", "", "YAML configuration file (env RTM_CONFIG)")
	}
	d := Defaults()
	for _, f := range Fields {
		if f.Secret || !f.In(groups) || fs.Lookup(f.Flag) != nil {
			continue
		}
		fs.Var(&flagValue{f: f, def: f.get(&d)}, f.Flag, f.Usage+" (env "+f.Env+")")
		if f.Kind == "bool" {
			fs.Lookup(f.Flag).NoOptDefVal = "true" // --kafka-tls alone means true
		}
	}
	return &Binding{fs: fs, groups: groups}
}

// Load builds the configuration: defaults, then the YAML file named by
// --config or RTM_CONFIG, then the bound groups' RTM_* variables (and
// RTM_*_FILE for secrets), then the flags set. Every problem is reported,
// not just the first.
func (b *Binding) Load() (Config, error) {
	c := Defaults()
	path := os.Getenv("RTM_CONFIG")
	if f := b.fs.Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("reading config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	var errs []error
	for _, f := range Fields {
		if !f.In(b.groups) {
			continue
		}
		if v, ok := os.LookupEnv(f.Env); ok {
			if err := f.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (%s): %w", f.Env, v, f.Key, err))
			}
		}
		if f.Secret {
			if p, ok := os.LookupEnv(f.Env + "_FILE"); ok {
				data, err := os.ReadFile(p)
				if err == nil {
					err = f.set(&c, strings.TrimRight(string(data), "\r\n"))
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s_FILE (%s): %w", f.Env, f.Key, err))
				}
			}
			continue
		}
		if fl := b.fs.Lookup(f.Flag); fl != nil && fl.Changed {
			if err := f.set(&c, fl.Value.String()); err != nil {
				errs = append(errs, fmt.Errorf("--%s=%q: %w", f.Flag, fl.Value, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Describe lists every setting with its env var, flag and effective value.
func (c Config) Describe() [][4]string {
	out := make([][4]string, len(Fields))
	for i, f := range Fields {
		v := f.get(&c)
		flag := "--" + f.Flag
		if f.Secret {
			v = map[bool]string{true: "(set)", false: "(unset)"}[v != ""]
			flag = f.Env + "_FILE"
		}
		out[i] = [4]string{f.Key, f.Env, flag, v}
	}
	return out
}

// flagValue is a typed flag: Set parses with the setting's own parser, so
// `--shutdown-timeout soon` is refused at parse time with the flag's name.
type flagValue struct {
	f        Field
	def, raw string
	set      bool
}

func (v *flagValue) String() string {
	if v.set {
		return v.raw
	}
	return v.def
}

func (v *flagValue) Set(s string) error {
	var scratch Config
	if err := v.f.set(&scratch, s); err != nil {
		return err
	}
	v.raw, v.set = s, true
	return nil
}

func (v *flagValue) Type() string { return v.f.Kind }

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseInt[T int | int16 | int32 | int64](bits int) func(string) (T, error) {
	return func(s string) (T, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, bits)
		return T(n), err
	}
}
