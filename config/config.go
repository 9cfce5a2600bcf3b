// Package config is RTM's one configuration: documented defaults, overridden
// by a YAML file, then by RTM_* environment variables, then by command-line
// flags. Every setting is declared once, in Fields, which drives all three
// sources and the `rtm config` listing.
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
	"github.com/rtm-project/rtm/topics"
)

// Config is every setting of the rtm binary.
type Config struct {
	// Brokers are the Kafka bootstrap servers.
	Brokers []string `yaml:"brokers"`
	// DataDir holds local state: Pebble stores, the embedded broker's data.
	DataDir string `yaml:"data_dir"`
	// Partitions is the partition count of every co-partitioned topic.
	Partitions int32 `yaml:"partitions"`
	// Replication is the replication factor for new topics. It is lowered to
	// the cluster size, with a warning, on smaller clusters (the embedded
	// broker has one).
	Replication int16  `yaml:"replication"`
	LogLevel    string `yaml:"log_level"`
	LogFormat   string `yaml:"log_format"`
	// HTTPAddr serves /healthz and /metrics.
	HTTPAddr string `yaml:"http_addr"`
	// CartWindow is how long a cart waits for an order before it counts as
	// abandoned.
	CartWindow time.Duration `yaml:"cart_window"`
	Broker     broker.Config `yaml:"broker"`

	// CollectorAddr is where `rtm collect` (and `rtm dev`) serve the
	// behaviour collector and tracking links.
	CollectorAddr string `yaml:"collector_addr"`
	// TrackingBase is the public URL of the collector, for tracked links
	// and open pixels; TrackingSecret signs them (the render stage and the
	// collector must share it; at least 16 bytes).
	TrackingBase   string `yaml:"tracking_base"`
	TrackingSecret string `yaml:"tracking_secret"`
	// MSSQLDSN is the SQL Server the CDC bridge reads (`rtm cdc`).
	MSSQLDSN string `yaml:"mssql_dsn"`
	// Channels configures rendering and the channel adapters.
	Channels Channels `yaml:"channels"`
}

// Channels is the delivery side: who mail comes from, and where each
// channel's API is.
type Channels struct {
	MailFrom          string              `yaml:"mail_from"`
	UnsubscribeMailto string              `yaml:"unsubscribe_mailto"`
	UnsubscribeURL    string              `yaml:"unsubscribe_url"`
	SMTP              channels.SMTPConfig `yaml:"smtp"`
	LINE              channels.LineConfig `yaml:"line"`
	FCM               channels.FCMConfig  `yaml:"fcm"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		Brokers:       []string{"127.0.0.1:9092"},
		DataDir:       "./var",
		Partitions:    topics.DefaultPartitions,
		Replication:   3,
		LogLevel:      "info",
		LogFormat:     "text",
		HTTPAddr:      "127.0.0.1:8080",
		CartWindow:    time.Hour,
		CollectorAddr: "127.0.0.1:8081",
		TrackingBase:  "http://127.0.0.1:8081",
		Channels: Channels{
			MailFrom:          "RTM Shop <noreply@shop.example.jp>",
			UnsubscribeMailto: "unsubscribe@shop.example.jp",
			UnsubscribeURL:    "https://shop.example.jp/unsubscribe",
			SMTP:              channels.SMTPDefaults(),
			LINE:              channels.LineDefaults(),
			FCM:               channels.FCMDefaults(),
		},
		Broker: broker.Defaults(),
	}
}

// Field is one setting: its YAML path, environment variable and flag.
type Field struct {
	Key, Env, Flag, Usage string
	get                   func(*Config) string
	set                   func(*Config, string) error
	// Secret settings are shown as set or unset, never printed.
	Secret bool
}

// Fields lists every setting.
var Fields = []Field{
	field("brokers", "RTM_BROKERS", "brokers", "Kafka bootstrap servers, comma-separated",
		func(c *Config) string { return strings.Join(c.Brokers, ",") },
		func(c *Config, v string) error { c.Brokers = splitList(v); return nil }),
	field("data_dir", "RTM_DATA_DIR", "data-dir", "local state directory (Pebble stores, embedded broker data)",
		func(c *Config) string { return c.DataDir },
		func(c *Config, v string) error { c.DataDir = v; return nil }),
	field("partitions", "RTM_PARTITIONS", "partitions", "partitions of every co-partitioned topic",
		func(c *Config) string { return strconv.Itoa(int(c.Partitions)) },
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 32)
			c.Partitions = int32(n)
			return err
		}),
	field("replication", "RTM_REPLICATION", "replication", "replication factor for new topics (lowered to the cluster size)",
		func(c *Config) string { return strconv.Itoa(int(c.Replication)) },
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 16)
			c.Replication = int16(n)
			return err
		}),
	field("log_level", "RTM_LOG_LEVEL", "log-level", "debug, info, warn or error",
		func(c *Config) string { return c.LogLevel },
		func(c *Config, v string) error { c.LogLevel = v; return nil }),
	field("log_format", "RTM_LOG_FORMAT", "log-format", "text or json",
		func(c *Config) string { return c.LogFormat },
		func(c *Config, v string) error { c.LogFormat = v; return nil }),
	field("http_addr", "RTM_HTTP_ADDR", "http-addr", "address of /healthz and /metrics",
		func(c *Config) string { return c.HTTPAddr },
		func(c *Config, v string) error { c.HTTPAddr = v; return nil }),
	field("cart_window", "RTM_CART_WINDOW", "cart-window", "how long a cart waits for an order before it counts as abandoned",
		func(c *Config) string { return c.CartWindow.String() },
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.CartWindow = d
			return err
		}),
	str("collector_addr", "RTM_COLLECTOR_ADDR", "collector-addr", "listen address of the behaviour collector and tracking links",
		func(c *Config) *string { return &c.CollectorAddr }),
	str("tracking_base", "RTM_TRACKING_BASE", "tracking-base", "public base URL of the collector, for tracked links",
		func(c *Config) *string { return &c.TrackingBase }),
	secret("tracking_secret", "RTM_TRACKING_SECRET", "tracking-secret", "HMAC key of tracking links (render and collector share it)",
		func(c *Config) *string { return &c.TrackingSecret }),
	secret("mssql_dsn", "RTM_MSSQL_DSN", "mssql-dsn", "SQL Server DSN for the CDC bridge",
		func(c *Config) *string { return &c.MSSQLDSN }),
	str("channels.mail_from", "RTM_MAIL_FROM", "mail-from", "sender of every mail",
		func(c *Config) *string { return &c.Channels.MailFrom }),
	str("channels.smtp.host", "RTM_SMTP_HOST", "smtp-host", "SMTP submission server",
		func(c *Config) *string { return &c.Channels.SMTP.Host }),
	field("channels.smtp.port", "RTM_SMTP_PORT", "smtp-port", "SMTP submission port",
		func(c *Config) string { return strconv.Itoa(c.Channels.SMTP.Port) },
		func(c *Config, v string) error { n, err := strconv.Atoi(v); c.Channels.SMTP.Port = n; return err }),
	str("channels.smtp.tls", "RTM_SMTP_TLS", "smtp-tls", "none, opportunistic, mandatory or implicit",
		func(c *Config) *string { return &c.Channels.SMTP.TLS }),
	str("channels.line.base_url", "RTM_LINE_BASE_URL", "line-base-url", "LINE Messaging API base URL",
		func(c *Config) *string { return &c.Channels.LINE.BaseURL }),
	secret("channels.line.channel_access_token", "RTM_LINE_TOKEN", "line-token", "LINE channel access token",
		func(c *Config) *string { return &c.Channels.LINE.ChannelAccessToken }),
	str("channels.fcm.base_url", "RTM_FCM_BASE_URL", "fcm-base-url", "FCM HTTP v1 base URL",
		func(c *Config) *string { return &c.Channels.FCM.BaseURL }),
	str("channels.fcm.project_id", "RTM_FCM_PROJECT", "fcm-project", "Firebase project ID",
		func(c *Config) *string { return &c.Channels.FCM.ProjectID }),
	secret("channels.fcm.access_token", "RTM_FCM_TOKEN", "fcm-token", "FCM OAuth access token",
		func(c *Config) *string { return &c.Channels.FCM.AccessToken }),
	field("broker.addr", "RTM_BROKER_ADDR", "broker-addr", "listen address of the embedded broker",
		func(c *Config) string { return c.Broker.Addr },
		func(c *Config, v string) error { c.Broker.Addr = v; return nil }),
	field("broker.cleaner_interval", "RTM_BROKER_CLEANER_INTERVAL", "broker-cleaner-interval", "how often the embedded broker compacts compacted topics",
		func(c *Config) string { return c.Broker.CleanerInterval.String() },
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.Broker.CleanerInterval = d
			return err
		}),
}

func field(key, env, flag, usage string, get func(*Config) string, set func(*Config, string) error) Field {
	return Field{Key: key, Env: env, Flag: flag, Usage: usage, get: get, set: set}
}

// str declares a plain string setting.
func str(key, env, flag, usage string, ptr func(*Config) *string) Field {
	return field(key, env, flag, usage,
		func(c *Config) string { return *ptr(c) },
		func(c *Config, v string) error { *ptr(c) = v; return nil })
}

// secret declares a string setting that `rtm config` never prints.
func secret(key, env, flag, usage string, ptr func(*Config) *string) Field {
	f := str(key, env, flag, usage, ptr)
	f.Secret = true
	return f
}

// RegisterFlags adds a flag per setting, showing the default.
func RegisterFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("config", "", "YAML configuration file (env RTM_CONFIG)")
	for _, f := range Fields {
		fs.String(f.Flag, f.get(&d), f.Usage+" (env "+f.Env+")")
	}
}

// Load builds the configuration: defaults, then the YAML file named by
// --config or RTM_CONFIG, then RTM_* variables, then the flags set on fs
// (which may be nil). Every problem is reported, not just the first.
func Load(fs *pflag.FlagSet) (Config, error) {
	c := Defaults()
	path := os.Getenv("RTM_CONFIG")
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
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
		if v, ok := os.LookupEnv(f.Env); ok {
			if err := f.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", f.Env, v, err))
			}
		}
		if fs == nil {
			continue
		}
		if fl := fs.Lookup(f.Flag); fl != nil && fl.Changed {
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

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
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
	if c.CartWindow <= 0 {
		errs = append(errs, fmt.Errorf("cart_window: %v must be positive", c.CartWindow))
	}
	if c.Broker.CleanerInterval <= 0 {
		errs = append(errs, fmt.Errorf("broker.cleaner_interval: %v must be positive", c.Broker.CleanerInterval))
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

// Catalogue returns the topic catalogue for this configuration, with
// replication as configured (see EffectiveReplication for the cluster cap).
func (c Config) Catalogue() topics.Catalogue { return topics.New(c.Partitions, c.Replication) }

// Describe lists every setting with its env var, flag and effective value.
func (c Config) Describe() [][4]string {
	out := make([][4]string, len(Fields))
	for i, f := range Fields {
		v := f.get(&c)
		if f.Secret {
			v = map[bool]string{true: "(set)", false: "(unset)"}[v != ""]
		}
		out[i] = [4]string{f.Key, f.Env, "--" + f.Flag, v}
	}
	return out
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
