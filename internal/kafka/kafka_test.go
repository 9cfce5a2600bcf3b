package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/broker"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/testkit"
)

// secureBroker starts the embedded broker with TLS and a SCRAM superuser.
func secureBroker(t *testing.T, mechanism string) (addr, ca string) {
	t.Helper()
	cert, key := testkit.SelfSignedCert(t)
	cfg := broker.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSCertFile, cfg.TLSKeyFile = cert, key
	cfg.SASLMechanism, cfg.SASLUsername, cfg.SASLPassword = mechanism, "rtm", "s3cret"
	b, err := broker.Start(cfg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr(), cert
}

// TestOneConfigurationForBothClients: the same Config lets franz-go and
// sarama (Goka's client) produce and read over SASL/SCRAM and TLS, for
// every mechanism.
func TestOneConfigurationForBothClients(t *testing.T) {
	for _, mech := range []string{kafka.MechanismSCRAM256, kafka.MechanismSCRAM512, kafka.MechanismPlain} {
		t.Run(mech, func(t *testing.T) {
			addr, ca := secureBroker(t, mech)
			k := kafka.Config{Brokers: []string{addr}, TLS: kafka.TLS{Enabled: true, CAFile: ca},
				SASL: kafka.SASL{Mechanism: mech, Username: "rtm", Password: "s3cret"}}
			ctx := testkit.Context(t)
			if err := k.Check(ctx, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			cl, err := k.NewClient(kgo.DefaultProduceTopic("secure"), kgo.AllowAutoTopicCreation())
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("from franz-go")}).FirstErr(); err != nil {
				t.Fatalf("franz-go produce: %v", err)
			}

			sc := sarama.NewConfig()
			sc.Version = sarama.V2_8_0_0
			sc.Producer.Return.Successes = true
			if err := k.ApplySarama(sc); err != nil {
				t.Fatal(err)
			}
			prod, err := sarama.NewSyncProducer(k.Brokers, sc)
			if err != nil {
				t.Fatalf("sarama producer: %v", err)
			}
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "secure", Value: sarama.StringEncoder("from sarama")}); err != nil {
				t.Fatalf("sarama produce: %v", err)
			}
			prod.Close()

			rd, err := k.NewClient(kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			var got []string
			for len(got) < 2 && ctx.Err() == nil {
				rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
			}
			if strings.Join(got, ",") != "from franz-go,from sarama" {
				t.Errorf("read %q", got)
			}
		})
	}
}

// TestBadCredentialsFailFast: a wrong password, a missing TLS setting and
// an untrusted certificate each fail Check at once with the brokers, the
// security in use and what to check — not after a retry loop.
func TestBadCredentialsFailFast(t *testing.T) {
	addr, ca := secureBroker(t, kafka.MechanismSCRAM256)
	good := kafka.Config{Brokers: []string{addr}, TLS: kafka.TLS{Enabled: true, CAFile: ca},
		SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAM256, Username: "rtm", Password: "s3cret"}}
	wrongPassword := good
	wrongPassword.SASL.Password = "guess"
	untrusted := good
	untrusted.TLS.CAFile = ""
	cases := []struct {
		name string
		cfg  kafka.Config
		want []string
	}{
		{"wrong password", wrongPassword, []string{addr, "SASL SCRAM-SHA-256 over TLS", "check kafka.sasl"}},
		{"untrusted certificate", untrusted, []string{addr, "certificate", "kafka.tls.ca_file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.cfg.Check(context.Background(), 20*time.Second)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := kafka.Config{TLS: kafka.TLS{CertFile: "c"}, SASL: kafka.SASL{Mechanism: "GSSAPI"}}.Validate()
	for _, w := range []string{"brokers", "cert_file and kafka.tls.key_file", "kafka.tls.enabled is false", `"GSSAPI" is not PLAIN`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v lacks %q", err, w)
		}
	}
}
