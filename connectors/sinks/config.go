package sinks

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Config configures the sinks. Zero values take the documented defaults.
type Config struct {
	// SMTPAddr and HTTPAddr are the listen addresses, loopback only (the
	// sinks accept anything and keep it). Port 0 picks a free port.
	// Defaults "127.0.0.1:2525" and "127.0.0.1:8025".
	SMTPAddr string `yaml:"smtp_addr"`
	HTTPAddr string `yaml:"http_addr"`
	// Keep is how many messages each sink keeps (the last ones). Default 1000.
	Keep int `yaml:"keep"`
	// EMLDir, when set, also receives every mail as an .eml file.
	EMLDir string `yaml:"eml_dir"`
	// LineToken is the channel access token the LINE endpoint accepts.
	// Default "rtm-dev-line-token".
	LineToken string `yaml:"line_channel_access_token"`
	// FCMToken and FCMProject are the bearer token and project the FCM
	// endpoint accepts. Defaults "rtm-dev-fcm-token" and "rtm-dev".
	FCMToken   string `yaml:"fcm_access_token"`
	FCMProject string `yaml:"fcm_project_id"`
	// Latency is how long the LINE and FCM endpoints take to answer each
	// request, as a real API's round trip does (benchmarks of the send
	// stage). Default 0.
	Latency time.Duration `yaml:"latency"`
	// Logger; nil discards.
	Logger *slog.Logger `yaml:"-"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{SMTPAddr: "127.0.0.1:2525", HTTPAddr: "127.0.0.1:8025", Keep: 1000,
		LineToken: "rtm-dev-line-token", FCMToken: "rtm-dev-fcm-token", FCMProject: "rtm-dev"}
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.SMTPAddr == "" {
		c.SMTPAddr = d.SMTPAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = d.HTTPAddr
	}
	if c.Keep == 0 {
		c.Keep = d.Keep
	}
	if c.LineToken == "" {
		c.LineToken = d.LineToken
	}
	if c.FCMToken == "" {
		c.FCMToken = d.FCMToken
	}
	if c.FCMProject == "" {
		c.FCMProject = d.FCMProject
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	for _, a := range []struct{ field, addr string }{{"smtp_addr", c.SMTPAddr}, {"http_addr", c.HTTPAddr}} {
		if err := loopback(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.field, err))
		}
	}
	if c.Keep < 1 {
		errs = append(errs, fmt.Errorf("keep %d must be at least 1", c.Keep))
	}
	return errors.Join(errs...)
}

func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not loopback: the sinks keep whatever they are sent, so they listen on 127.0.0.1 or ::1 only", addr)
	}
	return nil
}
