// Package kafka is RTM's one Kafka client configuration: the bootstrap
// servers, TLS and SASL, applied identically to every client in the binary —
// franz-go (admin, producers, the CDC bridge, rules) and sarama (under Goka).
// Every place that talks to Kafka takes a Config and asks it for client
// options, so a cluster under SASL/TLS needs no change anywhere else.
package kafka

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xdgscram "github.com/xdg-go/scram"
)

// SASL mechanisms RTM speaks.
const (
	MechanismPlain     = "PLAIN"
	MechanismSCRAM256  = "SCRAM-SHA-256"
	MechanismSCRAM512  = "SCRAM-SHA-512"
	mechanismsAccepted = MechanismPlain + ", " + MechanismSCRAM256 + " or " + MechanismSCRAM512
)

// Config is how to reach and authenticate to the cluster.
type Config struct {
	// Brokers are the bootstrap servers (host:port).
	Brokers []string `yaml:"-"`
	TLS     TLS      `yaml:"tls"`
	SASL    SASL     `yaml:"sasl"`
}

// TLS encrypts every connection. CAFile verifies the brokers (default: the
// system roots); CertFile and KeyFile present a client certificate (mTLS).
type TLS struct {
	Enabled  bool   `yaml:"enabled"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name verified in the brokers' certificates
	// (default: the host of the address dialled).
	ServerName string `yaml:"server_name"`
}

// SASL authenticates every connection. An empty Mechanism means none.
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("kafka.tls.cert_file and kafka.tls.key_file go together"))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "") {
		errs = append(errs, errors.New("kafka.tls: files are set but kafka.tls.enabled is false"))
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.Username != "" {
			errs = append(errs, fmt.Errorf("kafka.sasl.username is set but kafka.sasl.mechanism is not (%s)", mechanismsAccepted))
		}
	case MechanismPlain, MechanismSCRAM256, MechanismSCRAM512:
		if c.SASL.Username == "" || c.SASL.Password == "" {
			errs = append(errs, fmt.Errorf("kafka.sasl: %s needs a username and a password", c.SASL.Mechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism: %q is not %s", c.SASL.Mechanism, mechanismsAccepted))
	}
	return errors.Join(errs...)
}

// Describe names the brokers and the security in use, for error messages:
// "127.0.0.1:9092 (SASL SCRAM-SHA-256 over TLS)".
func (c Config) Describe() string {
	var sec []string
	if c.SASL.Mechanism != "" {
		sec = append(sec, "SASL "+c.SASL.Mechanism)
	}
	if c.TLS.Enabled {
		sec = append(sec, "TLS")
	}
	s := strings.Join(c.Brokers, ",")
	if len(sec) == 0 {
		return s + " (PLAINTEXT)"
	}
	return s + " (" + strings.Join(sec, " over ") + ")"
}

// tlsConfig builds the TLS configuration, or nil when TLS is off.
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate in it", c.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Opts returns the franz-go options of a client of this cluster: seeds,
// TLS dialer and SASL, followed by extra.
func (c Config) Opts(extra ...kgo.Opt) ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		nd := &net.Dialer{Timeout: 10 * time.Second}
		opts = append(opts, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			cfg := tc.Clone()
			if cfg.ServerName == "" {
				if h, _, err := net.SplitHostPort(host); err == nil {
					cfg.ServerName = h
				}
			}
			return (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, network, host)
		}))
	}
	if m := c.saslMechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return append(opts, extra...), nil
}

func (c Config) saslMechanism() sasl.Mechanism {
	a := scram.Auth{User: c.SASL.Username, Pass: c.SASL.Password}
	switch c.SASL.Mechanism {
	case MechanismPlain:
		return plain.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsMechanism()
	case MechanismSCRAM256:
		return a.AsSha256Mechanism()
	case MechanismSCRAM512:
		return a.AsSha512Mechanism()
	}
	return nil
}

// NewClient returns a franz-go client of this cluster with extra options.
func (c Config) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.Opts(extra...)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(opts...)
}

// ApplySarama sets TLS and SASL on a sarama configuration (Goka's clients)
// exactly as Opts does for franz-go.
func (c Config) ApplySarama(sc *sarama.Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return err
	}
	if tc != nil {
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	if c.SASL.Mechanism == "" {
		return nil
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User, sc.Net.SASL.Password = c.SASL.Username, c.SASL.Password
	switch c.SASL.Mechanism {
	case MechanismPlain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case MechanismSCRAM256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha256.New} }
	case MechanismSCRAM512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha512.New} }
	}
	return nil
}

// scramClient is sarama's SCRAM conversation over xdg-go/scram (sarama
// leaves the implementation to the user).
type scramClient struct {
	hash func() hash.Hash
	conv *xdgscram.ClientConversation
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	c, err := xdgscram.HashGeneratorFcn(s.hash).NewClient(user, pass, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }
func (s *scramClient) Done() bool                            { return s.conv.Done() }

// Check connects to the cluster and asks for its metadata, so that a
// command fails at once — naming the brokers and the security in use —
// when the cluster cannot be reached or refuses the credentials, instead
// of retrying in a loop. It waits at most timeout.
func (c Config) Check(ctx context.Context, timeout time.Duration) error {
	cl, err := c.NewClient()
	if err != nil {
		return fmt.Errorf("kafka %s: %w", c.Describe(), err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = cl.Ping(ctx)
	if err == nil {
		return nil
	}
	hint := "is the cluster up, and are brokers and kafka.tls right?"
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState), errors.Is(err, kerr.UnsupportedSaslMechanism):
		hint = "check kafka.sasl.mechanism, kafka.sasl.username and the password (RTM_KAFKA_SASL_PASSWORD)"
	case errors.As(err, &uae), errors.As(err, &hne):
		hint = "the brokers' certificate is not trusted: check kafka.tls.ca_file and kafka.tls.server_name"
	case c.SASL.Mechanism != "" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		// Some brokers (kfake among them) close the connection on failed
		// authentication instead of answering with an error code.
		hint = "the broker closed the connection while authenticating: check kafka.sasl.mechanism, kafka.sasl.username and the password (RTM_KAFKA_SASL_PASSWORD)"
	}
	return fmt.Errorf("kafka %s: %w (%s)", c.Describe(), err, hint)
}
