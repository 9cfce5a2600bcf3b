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
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		Brokers:     []string{"127.0.0.1:9092"},
		DataDir:     "./var",
		Partitions:  topics.DefaultPartitions,
		Replication: 3,
		LogLevel:    "info",
		LogFormat:   "text",
		HTTPAddr:    "127.0.0.1:8080",
		CartWindow:  time.Hour,
		Broker:      broker.Defaults(),
	}
}

// Field is one setting: its YAML path, environment variable and flag.
type Field struct {
	Key, Env, Flag, Usage string
	get                   func(*Config) string
	set                   func(*Config, string) error
}

// Fields lists every setting.
var Fields = []Field{
	{"brokers", "RTM_BROKERS", "brokers", "Kafka bootstrap servers, comma-separated",
		func(c *Config) string { return strings.Join(c.Brokers, ",") },
		func(c *Config, v string) error { c.Brokers = splitList(v); return nil }},
	{"data_dir", "RTM_DATA_DIR", "data-dir", "local state directory (Pebble stores, embedded broker data)",
		func(c *Config) string { return c.DataDir },
		func(c *Config, v string) error { c.DataDir = v; return nil }},
	{"partitions", "RTM_PARTITIONS", "partitions", "partitions of every co-partitioned topic",
		func(c *Config) string { return strconv.Itoa(int(c.Partitions)) },
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 32)
			c.Partitions = int32(n)
			return err
		}},
	{"replication", "RTM_REPLICATION", "replication", "replication factor for new topics (lowered to the cluster size)",
		func(c *Config) string { return strconv.Itoa(int(c.Replication)) },
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 16)
			c.Replication = int16(n)
			return err
		}},
	{"log_level", "RTM_LOG_LEVEL", "log-level", "debug, info, warn or error",
		func(c *Config) string { return c.LogLevel },
		func(c *Config, v string) error { c.LogLevel = v; return nil }},
	{"log_format", "RTM_LOG_FORMAT", "log-format", "text or json",
		func(c *Config) string { return c.LogFormat },
		func(c *Config, v string) error { c.LogFormat = v; return nil }},
	{"http_addr", "RTM_HTTP_ADDR", "http-addr", "address of /healthz and /metrics",
		func(c *Config) string { return c.HTTPAddr },
		func(c *Config, v string) error { c.HTTPAddr = v; return nil }},
	{"cart_window", "RTM_CART_WINDOW", "cart-window", "how long a cart waits for an order before it counts as abandoned",
		func(c *Config) string { return c.CartWindow.String() },
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.CartWindow = d
			return err
		}},
	{"broker.addr", "RTM_BROKER_ADDR", "broker-addr", "listen address of the embedded broker",
		func(c *Config) string { return c.Broker.Addr },
		func(c *Config, v string) error { c.Broker.Addr = v; return nil }},
	{"broker.cleaner_interval", "RTM_BROKER_CLEANER_INTERVAL", "broker-cleaner-interval", "how often the embedded broker compacts compacted topics",
		func(c *Config) string { return c.Broker.CleanerInterval.String() },
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.Broker.CleanerInterval = d
			return err
		}},
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
		out[i] = [4]string{f.Key, f.Env, "--" + f.Flag, f.get(&c)}
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
