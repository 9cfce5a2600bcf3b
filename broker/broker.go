// Package broker runs the embedded Kafka-protocol broker: franz-go's kfake,
// persisted to a data directory. `rtm broker`, `rtm dev` and the tests all
// start it through Start, so what newcomers run is what CI tests.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the listen address. Port 0 picks a free port (tests).
	Addr string `yaml:"addr"`
	// DataDir persists topics, records and committed offsets; empty keeps
	// everything in memory (tests that need no restart).
	DataDir string `yaml:"data_dir"`
	// CleanerInterval is how often compacted topics are compacted. kfake's
	// default is hourly; minutes keep changelogs and the rules topic small
	// during long `rtm dev` sessions.
	CleanerInterval time.Duration `yaml:"cleaner_interval"`
	// DefaultPartitions is used for auto-created topics (RTM creates its
	// topics explicitly; this only affects ad-hoc topics from tools).
	DefaultPartitions int32 `yaml:"default_partitions"`
	// TLSCertFile and TLSKeyFile, when set, make the broker speak TLS only.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// SASLMechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), when set, makes
	// the broker require SASL; SASLUsername and SASLPassword are its
	// superuser, the one account clients authenticate as.
	SASLMechanism string `yaml:"sasl_mechanism"`
	SASLUsername  string `yaml:"sasl_username"`
	SASLPassword  string `yaml:"sasl_password"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{Addr: "127.0.0.1:9092", CleanerInterval: 2 * time.Minute, DefaultPartitions: 1}
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// Start starts the broker; it listens until Close.
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker address %q: %w", cfg.Addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("broker address %q: port: %w", cfg.Addr, err)
	}
	if cfg.CleanerInterval <= 0 {
		cfg.CleanerInterval = Defaults().CleanerInterval
	}
	if cfg.DefaultPartitions <= 0 {
		cfg.DefaultPartitions = 1
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(p),
		// kfake binds 127.0.0.1; honour the configured host instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(p)))
		}),
		kfake.DefaultNumPartitions(int(cfg.DefaultPartitions)),
		kfake.AllowAutoTopicCreation(),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms": strconv.FormatInt(cfg.CleanerInterval.Milliseconds(), 10),
		}),
		kfake.WithLogger(slogLogger{log}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(filepath.Clean(cfg.DataDir)))
	}
	sec, err := cfg.securityOpts()
	if err != nil {
		return nil, err
	}
	opts = append(opts, sec...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker on %s: %w", cfg.Addr, err)
	}
	b := &Broker{cluster: c, addr: c.ListenAddrs()[0]}
	log.Info("embedded broker listening", "addr", b.addr, "data_dir", cfg.DataDir)
	return b, nil
}

// securityOpts turns on TLS and SASL as configured.
func (cfg Config) securityOpts() ([]kfake.Opt, error) {
	var opts []kfake.Opt
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("broker: tls_cert_file and tls_key_file go together")
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker TLS certificate: %w", err)
		}
		opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	switch cfg.SASLMechanism {
	case "":
		return opts, nil
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return nil, fmt.Errorf("broker: sasl_mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cfg.SASLMechanism)
	}
	if cfg.SASLUsername == "" || cfg.SASLPassword == "" {
		return nil, errors.New("broker: SASL needs sasl_username and sasl_password (the superuser)")
	}
	return append(opts, kfake.EnableSASL(), kfake.Superuser(cfg.SASLMechanism, cfg.SASLUsername, cfg.SASLPassword)), nil
}

// Addr is the address clients bootstrap from.
func (b *Broker) Addr() string { return b.addr }

// Compact compacts every compacted topic now (tests; operators wait for the
// cleaner interval).
func (b *Broker) Compact() { b.cluster.Compact() }

// Close stops the broker and flushes its data directory.
func (b *Broker) Close() { b.cluster.Close() }

// Run starts the broker and serves until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	b, err := Start(cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("embedded broker stopping")
	b.Close()
	return nil
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	case kfake.LogLevelInfo:
		// kfake logs every request at info; that is debug detail for us.
		l = slog.LevelDebug
	default:
		l = slog.LevelDebug - 4
	}
	if !s.l.Enabled(context.Background(), l) {
		return
	}
	s.l.Log(context.Background(), l, fmt.Sprintf(msg, args...), "component", "kfake")
}
