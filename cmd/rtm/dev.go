package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/broker"
	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/internal/console"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/rules/examples"
)

type devOptions struct {
	noSimulator bool
	members     int
	items       int
	eventsEvery time.Duration
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system on one machine: broker, topics, rules, simulated shop, every stage, local sinks",
		Long: `Starts the embedded broker on --broker-addr (data under <data-dir>, resumed on the next start),
applies the topic catalogue, publishes rules/examples, starts local protocol servers for mail, LINE
and FCM, the behaviour collector, the simulated shop (writing through the real CDC bridge), and every
stage; serves /healthz, /readyz, /metrics, the in-app inbox and the web console (/console/) on
--http-addr. Ctrl-C stops it cleanly. With --no-simulator the same system is fed only by what
arrives on the topics (e.g. from kcat). When the embedded broker is given TLS or SASL (broker.tls.*,
broker.sasl.*), every client in the process uses them too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			return runDev(cmd.Context(), cfg, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.noSimulator, "no-simulator", false, "run without the simulated shop and CDC bridge")
	cmd.Flags().IntVar(&o.members, "members", 1000, "simulated members")
	cmd.Flags().IntVar(&o.items, "items", 200, "simulated items")
	cmd.Flags().DurationVar(&o.eventsEvery, "step", 100*time.Millisecond, "simulated shop: real time between steps")
	return cmd
}

// runDev runs everything until ctx is done. On the way out every goroutine
// (stages, bridge, shop, collector) is stopped and awaited first, and only
// then are the resources they use (sinks, broker) closed, in reverse order
// of starting: a stage must be able to commit and flush before the broker
// goes away, and a delivery must never fail because its sink closed first.
func runDev(ctx context.Context, cfg config.Config, o devOptions, out io.Writer) error {
	inboxAPI, consoleUI := &lateHandler{}, &lateHandler{}
	p, err := startProcess(ctx, cfg, true, map[string]http.Handler{"GET /v1/inbox/{member}": inboxAPI, console.Prefix + "/": consoleUI},
		append([]string{"rules", inboxView}, pipeline.Stages()...)...)
	if err != nil {
		return err
	}
	defer p.close()
	log := p.log
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var closers []func()
	defer func() {
		cancel()
		wg.Wait()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				log.Error("component stopped", "component", name, "err", err)
			}
		}()
	}

	bc := cfg.Broker
	bc.DataDir = filepath.Join(cfg.DataDir, "kafka")
	b, err := broker.Start(bc, log)
	if err != nil {
		return err
	}
	closers = append(closers, b.Close)
	cfg.Brokers = []string{b.Addr()}
	cfg.Replication = 1
	cfg.Kafka = clientSecurity(bc)

	rep, err := applyTopics(ctx, cfg.KafkaConfig(), cfg.Catalogue(), false, log)
	if err != nil {
		return fmt.Errorf("applying topics: %w", err)
	}
	log.Info("topics applied", "result", rep.String())
	if err := publishExamples(ctx, cfg.KafkaConfig(), log); err != nil {
		return err
	}
	if cfg.TrackingSecret == "" {
		if cfg.TrackingSecret, err = devSecret(cfg.DataDir, "tracking.secret"); err != nil {
			return err
		}
	}
	// The events API is never open, not even here: without a configured
	// key, this run gets a random one, printed once below.
	apiKey := "(configured)"
	if len(cfg.Collector.APIKeys) == 0 {
		apiKey = randomHex()
		cfg.Collector.APIKeys = []string{apiKey}
	}
	// Without the shop's token keys, inbox tokens are HS256 under a
	// secret kept in the data directory, issued by "rtm-dev".
	sampleToken := "(inbox keys configured: use a token from your issuer)"
	if j := &cfg.Inbox.JWT; len(j.HS256Keys) == 0 && len(j.PublicKeyFiles) == 0 {
		secret, err := devSecret(cfg.DataDir, "inbox-jwt.secret")
		if err != nil {
			return err
		}
		j.HS256Keys = []string{"dev:" + secret}
		if j.Issuer == "" {
			j.Issuer = "rtm-dev"
		}
		if sampleToken, err = devInboxToken(secret, j.Issuer, j.Audience, "M00001"); err != nil {
			return err
		}
	}
	cfg.TrackingBase = "http://" + cfg.Collector.Addr

	sc := cfg.Sinks
	if sc.EMLDir == "" {
		sc.EMLDir = filepath.Join(cfg.DataDir, "mail")
	}
	sc.Logger = log
	sk, err := sinks.Start(ctx, sc)
	if err != nil {
		return fmt.Errorf("starting local sinks: %w", err)
	}
	closers = append(closers, func() { sk.Close() })
	pointChannelsAtSinks(&cfg, sk)
	p.cfg = cfg // what the stages, the collector and the inbox read from here on

	col, closeProducer, err := newCollector(cfg, p)
	if err != nil {
		return err
	}
	closers = append(closers, closeProducer)
	ln, err := net.Listen("tcp", cfg.Collector.Addr)
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	goRun("collector", func(ctx context.Context) error { return col.Serve(ctx, ln) })

	// The marketers' console, on the ops server; without a configured
	// token, one kept in the data directory, printed below.
	consoleToken := "(configured)"
	if cfg.Console.AdminToken == "" {
		if cfg.Console.AdminToken, err = devSecret(cfg.DataDir, "console-admin.token"); err != nil {
			return err
		}
		consoleToken = cfg.Console.AdminToken
	}
	ui, closeConsole, err := newConsole(cfg, p, console.LocalReadiness(p.health))
	if err != nil {
		return err
	}
	closers = append(closers, closeConsole)
	consoleUI.set(ui)
	goRun("console", func(ctx context.Context) error { ui.Run(ctx); return nil })

	// The in-app inbox, read from its table through a view.
	if err := runInboxView(ctx, p, inboxAPI); err != nil {
		return err
	}
	stagesDone := make(chan error, 1)
	goRun("stages", func(ctx context.Context) error {
		err := runStages(ctx, p, pipeline.Stages())
		stagesDone <- err
		return err
	})
	if !o.noSimulator {
		shop := simulator.System{Kafka: cfg.KafkaConfig(), Registerer: p.reg, Log: log,
			Shop: simulator.Config{Seed: 1, Members: o.members, Items: o.items, StepEvery: o.eventsEvery, Interval: o.eventsEvery}}
		goRun("simulated shop", shop.Run)
	}

	sim := "the simulated shop (its rows go through the real CDC bridge)"
	if o.noSimulator {
		sim = "no simulator: produce to cdc.* and behavior.events yourself (see README)"
	}
	fmt.Fprintf(out, `RTM dev is running: every stage, %s.
  Kafka (embedded)   %s            kcat -b %s -L
  health, metrics    http://%s/readyz   http://%s/metrics
  web console        http://%s/console/  (sign in with your name and token %s)
  in-app inbox       curl -H "Authorization: Bearer %s" http://%s/v1/inbox/M00001
                     (a member's own token only; this one is M00001's for 24 h, HS256 under var's inbox-jwt.secret, kid "dev")
  collector          http://%s/v1/events (POST with X-API-Key: %s), tracking links /t/o/ /t/c/ /t/u/
  mail sink          smtp://%s   sent mail: http://%s/sinks/mail  (.eml in %s)
  LINE and FCM sink  http://%s/sinks/line   http://%s/sinks/push
  results            kcat -b %s -C -t delivery.results -o beginning
Data is kept in %s across restarts; delete it to start afresh. Ctrl-C stops.
`, sim, b.Addr(), b.Addr(), cfg.HTTPAddr, cfg.HTTPAddr, cfg.HTTPAddr, consoleToken, sampleToken, cfg.HTTPAddr, cfg.Collector.Addr, apiKey,
		sk.SMTP.Addr(), sk.HTTP.Addr(), sc.EMLDir, sk.HTTP.Addr(), sk.HTTP.Addr(), b.Addr(), cfg.DataDir)
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-stagesDone:
		// A stage gave up: end the process with its error.
		return err
	}
}

// clientSecurity is what clients need to reach the embedded broker as
// configured: its superuser, and its certificate as the CA to trust.
func clientSecurity(bc broker.Config) kafka.Config {
	var k kafka.Config
	if bc.TLSCertFile != "" {
		k.TLS = kafka.TLS{Enabled: true, CAFile: bc.TLSCertFile}
	}
	if bc.SASLMechanism != "" {
		k.SASL = kafka.SASL{Mechanism: bc.SASLMechanism, Username: bc.SASLUsername, Password: bc.SASLPassword}
	}
	return k
}

// publishExamples publishes the example workbook; unchanged tables are not
// written again, so a restart publishes nothing.
func publishExamples(ctx context.Context, k kafka.Config, log *slog.Logger) error {
	specs, err := rules.ReadWorkbook(bytes.NewReader(examples.Workbook), examples.WorkbookName)
	if err != nil {
		return err
	}
	cl, err := k.NewClient(kgo.TransactionalID("rtm-dev-rules"), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := rules.Publish(pctx, cl, specs, rules.PublishMeta{Author: "rtm dev"})
	if err != nil {
		return fmt.Errorf("publishing rules/examples: %w", err)
	}
	log.Info("example rules published", "changed", len(rep.Published), "unchanged", len(rep.Unchanged))
	return nil
}

// devSecret returns the data directory's secret in file name, creating it
// once, so tracking links and inbox tokens keep working across restarts.
func devSecret(dataDir, name string) (string, error) {
	path := filepath.Join(dataDir, name)
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) >= config.MinSecretBytes {
		return string(bytes.TrimSpace(b)), nil
	}
	s := randomHex()
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	return s, os.WriteFile(path, []byte(s), 0o600)
}

// randomHex is 32 random bytes in hex: a dev secret or API key.
func randomHex() string {
	buf := make([]byte, 32)
	rand.Read(buf) // never fails (crypto/rand)
	return hex.EncodeToString(buf)
}

// devInboxToken mints a member token as a shop would, for rtm dev only.
func devInboxToken(secret, issuer, audience, member string) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: issuer, Audience: jwt.ClaimStrings{audience},
		Subject: member, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(24 * time.Hour))})
	t.Header["kid"] = "dev"
	return t.SignedString([]byte(secret))
}

// pointChannelsAtSinks makes the real adapters talk to the local sinks.
func pointChannelsAtSinks(cfg *config.Config, sk *sinks.Sinks) {
	sc := sk.Config()
	host, port, _ := net.SplitHostPort(sk.SMTP.Addr())
	cfg.Channels.SMTP.Host, cfg.Channels.SMTP.TLS = host, "none"
	cfg.Channels.SMTP.Port, _ = strconv.Atoi(port)
	cfg.Channels.LINE.BaseURL, cfg.Channels.LINE.ChannelAccessToken = sk.HTTP.URL(), sc.LineToken
	cfg.Channels.FCM.BaseURL, cfg.Channels.FCM.ProjectID, cfg.Channels.FCM.AccessToken = sk.HTTP.URL(), sc.FCMProject, sc.FCMToken
}
