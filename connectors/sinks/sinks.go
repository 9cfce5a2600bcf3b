package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Sinks are the running local channel servers.
type Sinks struct {
	SMTP *SMTPSink
	HTTP *HTTPSink

	cfg       Config
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	stop      func() bool
}

// Start starts the SMTP and HTTP sinks. They run until Close or until ctx
// is done. Start returns once both listen, so their addresses are final.
func Start(ctx context.Context, cfg Config) (*Sinks, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sinks config: %w", err)
	}
	cfg = cfg.withDefaults()
	smtpSink, err := newSMTPSink(cfg)
	if err != nil {
		return nil, err
	}
	httpSink, err := newHTTPSink(cfg, smtpSink)
	if err != nil {
		_ = smtpSink.ln.Close()
		return nil, err
	}
	s := &Sinks{SMTP: smtpSink, HTTP: httpSink, cfg: cfg}
	for name, serve := range map[string]func() error{"smtp": smtpSink.serve, "http": httpSink.serve} {
		s.wg.Go(func() {
			if err := serve(); err != nil {
				cfg.Logger.Error("sink stopped", "sink", name, "err", err)
			}
		})
	}
	s.stop = context.AfterFunc(ctx, func() { _ = s.Close() })
	cfg.Logger.Info("sinks listening", "smtp", smtpSink.Addr(), "http", httpSink.URL())
	return s, nil
}

// Config returns the effective configuration (defaults filled in), for
// pointing adapters at the sinks: tokens, project.
func (s *Sinks) Config() Config { return s.cfg }

// Close stops both sinks and waits for them. Kept messages stay readable.
func (s *Sinks) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		s.closeErr = errors.Join(s.SMTP.close(), s.HTTP.close())
		s.wg.Wait()
	})
	return s.closeErr
}
