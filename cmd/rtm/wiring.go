package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
)

// pipelineConfig is what the stages need from the configuration. The send
// stage's adapters are built only when it runs (they need credentials the
// other stages do not).
func pipelineConfig(cfg config.Config, p *process, rs stage.Rules, names []string) (pipeline.Config, func(), error) {
	log := p.log
	if err := stage.SetBlockCacheSize(cfg.StateCacheBytes); err != nil {
		return pipeline.Config{}, func() {}, fmt.Errorf("state_cache_bytes: %w", err)
	}
	pc := pipeline.Config{
		Brokers:     cfg.Brokers,
		Kafka:       cfg.KafkaConfig(),
		Catalogue:   cfg.Catalogue(),
		DataDir:     p.dir,
		InstanceID:  cfg.InstanceID,
		Health:      p.health,
		MaxFailures: cfg.MaxFailures,
		Rules:       rs,
		Detect:      detect.Config{CartWindow: cfg.CartWindow, TickInterval: time.Second},
		MemberState: memberstate.Config{ConversionWindow: cfg.ConversionWindow},
		Send:        send.Config{Concurrency: cfg.SendConcurrency()},
		Render: render.Config{TrackingBase: cfg.TrackingBase, TrackingTTL: cfg.TrackingTTL,
			MailFrom: cfg.Channels.MailFrom, UnsubscribeMailto: cfg.Channels.UnsubscribeMailto},
		Metrics: p.reg,
		Log:     log,
	}
	closeAll := func() {}
	for _, n := range names {
		if n == render.Group {
			keys, err := cfg.TrackingKeys()
			if err != nil {
				return pc, closeAll, fmt.Errorf("render: %w (RTM_TRACKING_SECRET or RTM_TRACKING_SECRET_FILE, the collector's)", err)
			}
			pc.Render.Keys = keys
		}
		if n == send.Group {
			d, closer, err := deliverer(cfg, p.reg, log)
			if err != nil {
				return pc, closeAll, err
			}
			pc.Deliverer, closeAll = d, closer
		}
	}
	return pc, closeAll, nil
}

// deliverer builds every channel's adapter behind its rate limit and retries.
func deliverer(cfg config.Config, reg prometheus.Registerer, log *slog.Logger) (send.Deliverer, func(), error) {
	m, err := channels.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	inappClient, err := channels.NewInAppProducer(cfg.KafkaConfig())
	if err != nil {
		return nil, nil, err
	}
	lineCfg, fcmCfg := cfg.Channels.LINE, cfg.Channels.FCM
	lineCfg.MaxConnections, fcmCfg.MaxConnections = cfg.HTTPConnections(), cfg.HTTPConnections()
	smtp, err1 := channels.NewSMTPAdapter(cfg.Channels.SMTP, log)
	line, err2 := channels.NewLineAdapter(lineCfg, log)
	fcm, err3 := channels.NewFCMAdapter(fcmCfg, log)
	inapp, err4 := channels.NewInAppAdapter(channels.InAppDefaults(), inappClient)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		inappClient.Close()
		if smtp != nil {
			smtp.Close()
		}
		return nil, nil, fmt.Errorf("channel adapters: %w", err)
	}
	closeAll := func() {
		inappClient.Close()
		if err := smtp.Close(); err != nil {
			log.Warn("closing pooled SMTP sessions", "err", err)
		}
	}
	var ds []*channels.Deliverer
	for _, a := range []channels.Adapter{smtp, line, fcm, inapp} {
		// A few quick attempts per delivery, and never a long wait on a
		// Retry-After: the send stage reschedules what is still failing,
		// so one channel's outage does not hold up a partition.
		d, err := channels.NewDeliverer(a, channels.DelivererConfig{Metrics: m, Logger: log,
			MaxAttempts: 3, MaxRetryAfter: 2 * time.Second})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		ds = append(ds, d)
	}
	r, err := channels.NewRouter(ds...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return r, closeAll, nil
}
