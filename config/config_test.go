package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/rtm-project/rtm/processors/send"
)

func TestPrecedenceDefaultsFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rtm.yaml")
	os.WriteFile(path, []byte("brokers: [a:9092, b:9092]\npartitions: 8\nlog_level: debug\nbroker:\n  cleaner_interval: 5m\n"), 0o644)
	t.Setenv("RTM_CONFIG", path)
	t.Setenv("RTM_PARTITIONS", "12")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	b := Bind(fs, GroupKafka, GroupTopology, GroupBroker)
	if err := fs.Parse([]string{"--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Brokers, ","); got != "a:9092,b:9092" {
		t.Errorf("brokers from file: %s", got)
	}
	if c.Partitions != 12 {
		t.Errorf("partitions: env should beat file, got %d", c.Partitions)
	}
	if c.LogLevel != "warn" {
		t.Errorf("log level: flag should beat file, got %s", c.LogLevel)
	}
	if c.Broker.CleanerInterval != 5*time.Minute {
		t.Errorf("cleaner interval from file: %v", c.Broker.CleanerInterval)
	}
	if c.DataDir != Defaults().DataDir {
		t.Errorf("data dir should default, got %s", c.DataDir)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		file  string
		wants []string
	}{
		{"bad values", map[string]string{"RTM_PARTITIONS": "0", "RTM_LOG_LEVEL": "loud", "RTM_LOG_FORMAT": "xml"}, "",
			[]string{"partitions: 0 must be at least 1", `log_level: "loud"`, `log_format: "xml"`}},
		{"unparsable env", map[string]string{"RTM_REPLICATION": "three", "RTM_BROKER_CLEANER_INTERVAL": "soon"}, "",
			[]string{`RTM_REPLICATION="three"`, `RTM_BROKER_CLEANER_INTERVAL="soon"`}},
		{"unknown yaml key", nil, "partitons: 4\n", []string{"field partitons not found"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.file != "" {
				p := filepath.Join(t.TempDir(), "c.yaml")
				os.WriteFile(p, []byte(tc.file), 0o644)
				t.Setenv("RTM_CONFIG", p)
			}
			_, err := Bind(pflag.NewFlagSet("t", pflag.ContinueOnError), GroupTopology, GroupBroker).Load()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDefaultsAreValid(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := Defaults().Catalogue().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestCommandsSeeOnlyTheirSettings: a command binds only its groups, so
// its flags are only its settings, and a bad variable of a group it does
// not read cannot stop it.
func TestCommandsSeeOnlyTheirSettings(t *testing.T) {
	t.Setenv("RTM_SMTP_PORT", "not-a-port")
	fs := pflag.NewFlagSet("rules validate", pflag.ContinueOnError)
	b := Bind(fs)
	for _, name := range []string{"smtp-port", "mssql-dsn", "fcm-token", "collector-addr", "brokers"} {
		if fs.Lookup(name) != nil {
			t.Errorf("--%s is registered for a command that reads only the log settings", name)
		}
	}
	if _, err := b.Load(); err != nil {
		t.Errorf("unrelated bad variable stopped the command: %v", err)
	}
	if _, err := Bind(pflag.NewFlagSet("run", pflag.ContinueOnError), GroupChannels).Load(); err == nil ||
		!strings.Contains(err.Error(), "RTM_SMTP_PORT") || !strings.Contains(err.Error(), "channels.smtp.port") {
		t.Errorf("a command that reads channels must name the bad variable and its key, got %v", err)
	}
}

// TestTypedFlagsAndSecrets: flags parse as their type and a bad value names
// the flag; secrets have no flag and come from the environment or a file.
func TestTypedFlagsAndSecrets(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := Bind(fs, GroupProcess, GroupStages, GroupChannels, GroupKafka, GroupMSSQL, GroupCollector)
	cases := []struct {
		args []string
		want string // substring of the parse error; "" for success
	}{
		{[]string{"--shutdown-timeout", "soon"}, `invalid argument "soon" for "--shutdown-timeout" flag: not a duration`},
		{[]string{"--smtp-port", "x"}, `"--smtp-port" flag: not a whole number`},
		{[]string{"--kafka-tls=maybe"}, `"--kafka-tls" flag: not true or false`},
		{[]string{"--line-token", "t"}, "unknown flag: --line-token"},
		{[]string{"--mssql-dsn", "d"}, "unknown flag: --mssql-dsn"},
		{[]string{"--tracking-secret", "s"}, "unknown flag: --tracking-secret"},
		{[]string{"--shutdown-timeout", "45s", "--max-failures", "3", "--kafka-tls"}, ""},
	}
	for _, tc := range cases {
		err := fs.Parse(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	secret := filepath.Join(t.TempDir(), "dsn")
	os.WriteFile(secret, []byte("sqlserver://u:p@db\n"), 0o600)
	t.Setenv("RTM_MSSQL_DSN_FILE", secret)
	t.Setenv("RTM_LINE_TOKEN", "line-secret")
	c, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.ShutdownTimeout != 45*time.Second || c.MaxFailures != 3 {
		t.Errorf("typed flags: shutdown_timeout %v, max_failures %d", c.ShutdownTimeout, c.MaxFailures)
	}
	if c.MSSQLDSN != "sqlserver://u:p@db" || c.Channels.LINE.ChannelAccessToken != "line-secret" {
		t.Errorf("secrets: dsn %q, line token %q", c.MSSQLDSN, c.Channels.LINE.ChannelAccessToken)
	}
	for _, row := range c.Describe() {
		if strings.Contains(row[3], "secret") || strings.Contains(row[3], "u:p@") {
			t.Errorf("Describe prints a secret: %v", row)
		}
	}
}

// TestEverySettingHasKeyEnvAndGroup keeps Fields complete: a YAML key, an
// environment variable, a group, and a flag unless it is a secret.
func TestEverySettingHasKeyEnvAndGroup(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Fields {
		if f.Key == "" || f.Env == "" || len(f.Groups) == 0 || (f.Flag == "") != f.Secret {
			t.Errorf("incomplete setting %+v", f)
		}
		if seen[f.Key] {
			t.Errorf("setting %s declared twice", f.Key)
		}
		seen[f.Key] = true
	}
}

// TestSecretsHaveOneMinimumLength: every secret setting is held to
// MinSecretBytes, and the tracking keyring follows the settings.
func TestSecretsHaveOneMinimumLength(t *testing.T) {
	long := strings.Repeat("s", MinSecretBytes)
	c := Defaults()
	c.TrackingSecret, c.TrackingOldSecrets = long, []string{"old-too-short"}
	c.Collector.APIKeys = []string{long, "sixteen-bytes-ok"}
	c.Inbox.JWT.HS256Keys = []string{"dev:short", "k2:" + long}
	c.TrackingTTL = 0
	err := c.Validate()
	for _, want := range []string{"tracking_old_secrets[0]: has 13 bytes; use at least 32", "collector.api_keys[1]: has 16 bytes; use at least 32",
		"inbox.jwt.hs256_keys[0] (kid:secret): has 5 bytes", "tracking_ttl: 0s must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to say %q", err, want)
		}
	}
	for _, bad := range []string{"collector.api_keys[0]", "inbox.jwt.hs256_keys[1]", "tracking_secret:"} {
		if err != nil && strings.Contains(err.Error(), bad) {
			t.Errorf("Validate refused a long enough secret: %v", err)
		}
	}
	c = Defaults()
	c.TrackingSecret, c.TrackingOldSecrets = long, []string{strings.Repeat("o", MinSecretBytes)}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if kr, err := c.TrackingKeys(); err != nil || kr == nil {
		t.Errorf("TrackingKeys: %v", err)
	}
}

// TestChannelSettings: the FCM service-account key comes from a file named
// by RTM_FCM_CREDENTIALS_FILE (it is a secret: no flag), the HTTP pool
// defaults to the partition count, and bad pool sizes are refused.
func TestChannelSettings(t *testing.T) {
	key := filepath.Join(t.TempDir(), "fcm.json")
	os.WriteFile(key, []byte(`{"type":"service_account"}`+"\n"), 0o600)
	t.Setenv("RTM_FCM_CREDENTIALS_FILE", key)
	t.Setenv("RTM_PARTITIONS", "24")
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := Bind(fs, GroupTopology, GroupChannels)
	if fs.Lookup("fcm-credentials-json") != nil || fs.Lookup("fcm-token-url") == nil {
		t.Error("the service-account key must have no flag; the token URL must have one")
	}
	c, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Channels.FCM.CredentialsJSON != `{"type":"service_account"}` {
		t.Errorf("credentials_json = %q", c.Channels.FCM.CredentialsJSON)
	}
	if got, want := c.HTTPConnections(), 24*send.DefaultConcurrency; got != want {
		t.Errorf("HTTPConnections() = %d, want partitions × send concurrency %d", got, want)
	}
	t.Setenv("RTM_SEND_CONCURRENCY", "3")
	if c, err = Bind(pflag.NewFlagSet("run", pflag.ContinueOnError), GroupTopology, GroupChannels).Load(); err != nil {
		t.Fatal(err)
	} else if c.SendConcurrency() != 3 || c.HTTPConnections() != 72 {
		t.Errorf("send_concurrency 3: SendConcurrency() = %d, HTTPConnections() = %d, want 3 and 72", c.SendConcurrency(), c.HTTPConnections())
	}
	t.Setenv("RTM_SEND_CONCURRENCY", "-3")
	t.Setenv("RTM_CHANNELS_HTTP_CONNECTIONS", "-1")
	t.Setenv("RTM_SMTP_POOL_SIZE", "-2")
	_, err = Bind(pflag.NewFlagSet("run", pflag.ContinueOnError), GroupTopology, GroupChannels).Load()
	for _, w := range []string{"channels.http_connections: -1 must not be negative", "channels.smtp.pool_size: -2 must be at least 1", "channels.send_concurrency: -3 must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}
