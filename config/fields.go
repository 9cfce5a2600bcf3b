package config

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Group is a set of settings read together; a command binds the groups it
// reads.
type Group string

// The groups, and who reads them.
const (
	GroupLog       Group = "log"       // every command
	GroupKafka     Group = "kafka"     // every command that talks to Kafka
	GroupTopology  Group = "topology"  // partitions and replication: topics, run, dev
	GroupProcess   Group = "process"   // long-running commands: state, identity, ops endpoints, shutdown
	GroupStages    Group = "stages"    // run, dev: what the stages read
	GroupChannels  Group = "channels"  // run (send, render), dev
	GroupCollector Group = "collector" // collect, dev
	GroupInbox     Group = "inbox"     // run (the inbox stage), dev
	GroupMSSQL     Group = "mssql"     // cdc
	GroupBroker    Group = "broker"    // broker, dev
	GroupSinks     Group = "sinks"     // sinks, dev
	GroupConsole   Group = "console"   // console, dev
)

// Field is one setting: its YAML path, environment variable and flag.
type Field struct {
	Key, Env, Flag, Usage string
	// Groups are the groups the setting belongs to (most belong to one).
	Groups []Group
	// Kind is the value's type as flags show it: string, int, float,
	// duration, bool, strings.
	Kind string
	get  func(*Config) string
	set  func(*Config, string) error
	// Secret settings have no flag and are shown as set or unset.
	Secret bool
}

// Fields lists every setting.
var Fields = []Field{
	list(GroupKafka, "brokers", "RTM_BROKERS", "brokers", "Kafka bootstrap servers, comma-separated", func(c *Config) *[]string { return &c.Brokers }),
	boolean(GroupKafka, "kafka.tls.enabled", "RTM_KAFKA_TLS", "kafka-tls", "encrypt Kafka connections with TLS", func(c *Config) *bool { return &c.Kafka.TLS.Enabled }),
	str(GroupKafka, "kafka.tls.ca_file", "RTM_KAFKA_TLS_CA_FILE", "kafka-tls-ca-file", "CA bundle (PEM) that verifies the brokers (default: system roots)", func(c *Config) *string { return &c.Kafka.TLS.CAFile }),
	str(GroupKafka, "kafka.tls.cert_file", "RTM_KAFKA_TLS_CERT_FILE", "kafka-tls-cert-file", "client certificate (PEM) for mutual TLS", func(c *Config) *string { return &c.Kafka.TLS.CertFile }),
	str(GroupKafka, "kafka.tls.key_file", "RTM_KAFKA_TLS_KEY_FILE", "kafka-tls-key-file", "client key (PEM) for mutual TLS", func(c *Config) *string { return &c.Kafka.TLS.KeyFile }),
	str(GroupKafka, "kafka.tls.server_name", "RTM_KAFKA_TLS_SERVER_NAME", "kafka-tls-server-name", "name verified in the brokers' certificates (default: the host dialled)", func(c *Config) *string { return &c.Kafka.TLS.ServerName }),
	str(GroupKafka, "kafka.sasl.mechanism", "RTM_KAFKA_SASL_MECHANISM", "kafka-sasl-mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)", func(c *Config) *string { return &c.Kafka.SASL.Mechanism }),
	str(GroupKafka, "kafka.sasl.username", "RTM_KAFKA_SASL_USERNAME", "kafka-sasl-username", "SASL user", func(c *Config) *string { return &c.Kafka.SASL.Username }),
	secret(GroupKafka, "kafka.sasl.password", "RTM_KAFKA_SASL_PASSWORD", "SASL password", func(c *Config) *string { return &c.Kafka.SASL.Password }),

	integer(GroupTopology, "partitions", "RTM_PARTITIONS", "partitions", "partitions of every co-partitioned topic", func(c *Config) *int32 { return &c.Partitions }, parseInt[int32](32)),
	integer(GroupTopology, "replication", "RTM_REPLICATION", "replication", "replication factor for new topics (lowered to the cluster size)", func(c *Config) *int16 { return &c.Replication }, parseInt[int16](16)),

	str(GroupLog, "log_level", "RTM_LOG_LEVEL", "log-level", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
	str(GroupLog, "log_format", "RTM_LOG_FORMAT", "log-format", "text or json", func(c *Config) *string { return &c.LogFormat }),

	alsoIn(str(GroupProcess, "data_dir", "RTM_DATA_DIR", "data-dir", "local state: <data-dir>/<instance-id> (Pebble stores), <data-dir>/kafka (embedded broker)", func(c *Config) *string { return &c.DataDir }), GroupBroker),
	str(GroupProcess, "instance_id", "RTM_INSTANCE_ID", "instance-id", "this instance's name: Kafka static membership ID and state directory (default: host name)", func(c *Config) *string { return &c.InstanceID }),
	str(GroupProcess, "http_addr", "RTM_HTTP_ADDR", "http-addr", "address of /healthz, /readyz and /metrics", func(c *Config) *string { return &c.HTTPAddr }),
	duration(GroupProcess, "shutdown_timeout", "RTM_SHUTDOWN_TIMEOUT", "shutdown-timeout", "how long a graceful stop may take before the process exits non-zero", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),

	integer(GroupStages, "state_cache_bytes", "RTM_STATE_CACHE_BYTES", "state-cache-bytes", "Pebble block cache shared by the process's stages (data, index and filter blocks of their tables; memtables come on top)", func(c *Config) *int64 { return &c.StateCacheBytes }, parseInt[int64](64)),
	integer(GroupStages, "max_failures", "RTM_MAX_FAILURES", "max-failures", "consecutive failures of a stage that end the process (0: never)", func(c *Config) *int { return &c.MaxFailures }, parseInt[int](0)),
	duration(GroupStages, "lag_interval", "RTM_LAG_INTERVAL", "lag-interval", "how often the consumer lag of the stages' groups is read for rtm_consumer_lag_records", func(c *Config) *time.Duration { return &c.LagInterval }),
	duration(GroupStages, "cart_window", "RTM_CART_WINDOW", "cart-window", "how long a cart waits for an order before it counts as abandoned", func(c *Config) *time.Duration { return &c.CartWindow }),
	duration(GroupStages, "conversion_window", "RTM_CONVERSION_WINDOW", "conversion-window", "how long after a sent or held_out delivery an order counts as its conversion (member-state)", func(c *Config) *time.Duration { return &c.ConversionWindow }),
	str(GroupStages, "tracking_base", "RTM_TRACKING_BASE", "tracking-base", "public base URL of the collector, for tracked links", func(c *Config) *string { return &c.TrackingBase }),
	alsoIn(secret(GroupStages, "tracking_secret", "RTM_TRACKING_SECRET", "key that seals tracking links, at least 32 bytes (render and collector share it)", func(c *Config) *string { return &c.TrackingSecret }), GroupCollector),
	alsoIn(secretList(GroupStages, "tracking_old_secrets", "RTM_TRACKING_OLD_SECRETS", "previous tracking secrets, comma-separated: they still open links until removed (retired)", func(c *Config) *[]string { return &c.TrackingOldSecrets }), GroupCollector),
	duration(GroupStages, "tracking_ttl", "RTM_TRACKING_TTL", "tracking-ttl", "how long rendered links, open pixels and unsubscribe links work", func(c *Config) *time.Duration { return &c.TrackingTTL }),

	str(GroupInbox, "inbox.jwt.issuer", "RTM_INBOX_JWT_ISSUER", "inbox-jwt-issuer", "iss of the shop's member tokens (required by the inbox API)", func(c *Config) *string { return &c.Inbox.JWT.Issuer }),
	str(GroupInbox, "inbox.jwt.audience", "RTM_INBOX_JWT_AUDIENCE", "inbox-jwt-audience", "aud the member tokens must name", func(c *Config) *string { return &c.Inbox.JWT.Audience }),
	secretList(GroupInbox, "inbox.jwt.hs256_keys", "RTM_INBOX_JWT_HS256_KEYS", "HS256 secrets of member tokens as kid:secret, comma-separated (several for rotation)", func(c *Config) *[]string { return &c.Inbox.JWT.HS256Keys }),
	list(GroupInbox, "inbox.jwt.public_key_files", "RTM_INBOX_JWT_PUBLIC_KEY_FILES", "inbox-jwt-public-key-files", "RS256/ES256 public keys (PEM) of member tokens as kid:path, comma-separated", func(c *Config) *[]string { return &c.Inbox.JWT.PublicKeyFiles }),

	str(GroupChannels, "channels.mail_from", "RTM_MAIL_FROM", "mail-from", "sender of every mail", func(c *Config) *string { return &c.Channels.MailFrom }),
	str(GroupChannels, "channels.unsubscribe_mailto", "RTM_UNSUBSCRIBE_MAILTO", "unsubscribe-mailto", "List-Unsubscribe mailto address (next to the member's one-click link)", func(c *Config) *string { return &c.Channels.UnsubscribeMailto }),
	str(GroupChannels, "channels.smtp.host", "RTM_SMTP_HOST", "smtp-host", "SMTP submission server", func(c *Config) *string { return &c.Channels.SMTP.Host }),
	integer(GroupChannels, "channels.smtp.port", "RTM_SMTP_PORT", "smtp-port", "SMTP submission port", func(c *Config) *int { return &c.Channels.SMTP.Port }, parseInt[int](0)),
	str(GroupChannels, "channels.smtp.tls", "RTM_SMTP_TLS", "smtp-tls", "none, opportunistic, mandatory or implicit", func(c *Config) *string { return &c.Channels.SMTP.TLS }),
	str(GroupChannels, "channels.smtp.username", "RTM_SMTP_USERNAME", "smtp-username", "SMTP AUTH user (empty: no AUTH)", func(c *Config) *string { return &c.Channels.SMTP.Username }),
	secret(GroupChannels, "channels.smtp.password", "RTM_SMTP_PASSWORD", "SMTP AUTH password", func(c *Config) *string { return &c.Channels.SMTP.Password }),
	str(GroupChannels, "channels.line.base_url", "RTM_LINE_BASE_URL", "line-base-url", "LINE Messaging API base URL", func(c *Config) *string { return &c.Channels.LINE.BaseURL }),
	secret(GroupChannels, "channels.line.channel_access_token", "RTM_LINE_TOKEN", "LINE channel access token", func(c *Config) *string { return &c.Channels.LINE.ChannelAccessToken }),
	str(GroupChannels, "channels.fcm.base_url", "RTM_FCM_BASE_URL", "fcm-base-url", "FCM HTTP v1 base URL", func(c *Config) *string { return &c.Channels.FCM.BaseURL }),
	str(GroupChannels, "channels.fcm.project_id", "RTM_FCM_PROJECT", "fcm-project", "Firebase project ID", func(c *Config) *string { return &c.Channels.FCM.ProjectID }),
	secret(GroupChannels, "channels.fcm.access_token", "RTM_FCM_TOKEN", "static FCM bearer token, never refreshed (local sink only; production uses credentials_json)", func(c *Config) *string { return &c.Channels.FCM.AccessToken }),
	secret(GroupChannels, "channels.fcm.credentials_json", "RTM_FCM_CREDENTIALS", "FCM service-account key (JSON); access tokens are minted from it and refreshed before they expire", func(c *Config) *string { return &c.Channels.FCM.CredentialsJSON }),
	str(GroupChannels, "channels.fcm.token_url", "RTM_FCM_TOKEN_URL", "fcm-token-url", "OAuth 2 token endpoint for the service account (default: the key's token_uri)", func(c *Config) *string { return &c.Channels.FCM.TokenURL }),
	integer(GroupChannels, "channels.smtp.pool_size", "RTM_SMTP_POOL_SIZE", "smtp-pool-size", "SMTP sessions kept open and reused (and the most open at once)", func(c *Config) *int { return &c.Channels.SMTP.PoolSize }, parseInt[int](0)),
	duration(GroupChannels, "channels.smtp.idle_timeout", "RTM_SMTP_IDLE_TIMEOUT", "smtp-idle-timeout", "how long an unused SMTP session is kept", func(c *Config) *time.Duration { return &c.Channels.SMTP.IdleTimeout }),
	integer(GroupChannels, "channels.http_connections", "RTM_CHANNELS_HTTP_CONNECTIONS", "channels-http-connections", "idle connections kept per HTTP channel API (LINE, FCM); 0: partitions × send_concurrency, the most deliveries a send instance has in flight", func(c *Config) *int { return &c.Channels.HTTPConnections }, parseInt[int](0)),
	integer(GroupChannels, "channels.send_concurrency", "RTM_SEND_CONCURRENCY", "send-concurrency", "deliveries of one partition with their channels at once (a member's go one at a time, in order); 0: 8", func(c *Config) *int { return &c.Channels.SendConcurrency }, parseInt[int](0)),

	str(GroupCollector, "collector.addr", "RTM_COLLECTOR_ADDR", "collector-addr", "listen address of the behaviour collector and tracking links", func(c *Config) *string { return &c.Collector.Addr }),
	secretList(GroupCollector, "collector.api_keys", "RTM_COLLECTOR_API_KEYS", "X-API-Key values of POST /v1/events, comma-separated, at least 32 bytes each (required by rtm collect)", func(c *Config) *[]string { return &c.Collector.APIKeys }),
	integer(GroupCollector, "collector.max_body_bytes", "RTM_COLLECTOR_MAX_BODY_BYTES", "collector-max-body-bytes", "largest request body (larger: 413)", func(c *Config) *int64 { return &c.Collector.MaxBodyBytes }, parseInt[int64](64)),
	integer(GroupCollector, "collector.max_events", "RTM_COLLECTOR_MAX_EVENTS", "collector-max-events", "most events in one request (more: 413)", func(c *Config) *int { return &c.Collector.MaxEvents }, parseInt[int](0)),
	float(GroupCollector, "collector.rate_per_second", "RTM_COLLECTOR_RATE", "collector-rate", "events per second accepted per API key (negative: unlimited)", func(c *Config) *float64 { return &c.Collector.RatePerSecond }),
	float(GroupCollector, "collector.tracking_rate", "RTM_COLLECTOR_TRACKING_RATE", "collector-tracking-rate", "tracking hits per second per client address (negative: unlimited)", func(c *Config) *float64 { return &c.Collector.TrackingRate }),
	integer(GroupCollector, "collector.tracking_burst", "RTM_COLLECTOR_TRACKING_BURST", "collector-tracking-burst", "tracking hits per client address in a burst", func(c *Config) *int { return &c.Collector.TrackingBurst }, parseInt[int](0)),
	integer(GroupCollector, "collector.burst", "RTM_COLLECTOR_BURST", "collector-burst", "events accepted per API key in a burst above the rate (at least max_events)", func(c *Config) *int { return &c.Collector.Burst }, parseInt[int](0)),

	secret(GroupMSSQL, "mssql_dsn", "RTM_MSSQL_DSN", "SQL Server DSN for the CDC bridge", func(c *Config) *string { return &c.MSSQLDSN }),

	str(GroupBroker, "broker.addr", "RTM_BROKER_ADDR", "broker-addr", "listen address of the embedded broker", func(c *Config) *string { return &c.Broker.Addr }),
	duration(GroupBroker, "broker.cleaner_interval", "RTM_BROKER_CLEANER_INTERVAL", "broker-cleaner-interval", "how often the embedded broker compacts compacted topics", func(c *Config) *time.Duration { return &c.Broker.CleanerInterval }),
	str(GroupBroker, "broker.tls.cert_file", "RTM_BROKER_TLS_CERT_FILE", "broker-tls-cert-file", "embedded broker: serve TLS with this certificate (PEM)", func(c *Config) *string { return &c.Broker.TLSCertFile }),
	str(GroupBroker, "broker.tls.key_file", "RTM_BROKER_TLS_KEY_FILE", "broker-tls-key-file", "embedded broker: the certificate's key (PEM)", func(c *Config) *string { return &c.Broker.TLSKeyFile }),
	str(GroupBroker, "broker.sasl.mechanism", "RTM_BROKER_SASL_MECHANISM", "broker-sasl-mechanism", "embedded broker: require SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)", func(c *Config) *string { return &c.Broker.SASLMechanism }),
	str(GroupBroker, "broker.sasl.username", "RTM_BROKER_SASL_USERNAME", "broker-sasl-username", "embedded broker: the SASL superuser", func(c *Config) *string { return &c.Broker.SASLUsername }),
	secret(GroupBroker, "broker.sasl.password", "RTM_BROKER_SASL_PASSWORD", "embedded broker: the superuser's password", func(c *Config) *string { return &c.Broker.SASLPassword }),

	secret(GroupConsole, "console.admin_token", "RTM_CONSOLE_ADMIN_TOKEN", "administrator password or token of the web console, at least 32 bytes (required by rtm console; rtm dev makes one and prints it)", func(c *Config) *string { return &c.Console.AdminToken }),
	list(GroupConsole, "console.stage_urls", "RTM_CONSOLE_STAGE_URLS", "console-stage-urls", "base URLs of the stage processes' ops servers (http_addr), comma-separated: the console shows each one's /readyz", func(c *Config) *[]string { return &c.Console.StageURLs }),
	duration(GroupConsole, "console.session_ttl", "RTM_CONSOLE_SESSION_TTL", "console-session-ttl", "how long a console sign-in lasts", func(c *Config) *time.Duration { return &c.Console.SessionTTL }),
	duration(GroupConsole, "console.poll_interval", "RTM_CONSOLE_POLL_INTERVAL", "console-poll-interval", "how often the console reads the stages' consumer lag and offsets (rates are the difference of two readings)", func(c *Config) *time.Duration { return &c.Console.PollInterval }),

	str(GroupSinks, "sinks.smtp_addr", "RTM_SINKS_SMTP_ADDR", "sink-smtp-addr", "local mail sink (loopback)", func(c *Config) *string { return &c.Sinks.SMTPAddr }),
	str(GroupSinks, "sinks.http_addr", "RTM_SINKS_HTTP_ADDR", "sink-http-addr", "local LINE, FCM and view sink (loopback)", func(c *Config) *string { return &c.Sinks.HTTPAddr }),
	integer(GroupSinks, "sinks.keep", "RTM_SINKS_KEEP", "sink-keep", "how many messages each sink keeps (the last ones)", func(c *Config) *int { return &c.Sinks.Keep }, parseInt[int](0)),
	str(GroupSinks, "sinks.eml_dir", "RTM_SINKS_EML_DIR", "sink-eml-dir", "also write every mail received as an .eml file here", func(c *Config) *string { return &c.Sinks.EMLDir }),
}

func field(g Group, kind, key, env, flag, usage string, get func(*Config) string, set func(*Config, string) error) Field {
	return Field{Key: key, Env: env, Flag: flag, Usage: usage, Groups: []Group{g}, Kind: kind, get: get, set: set}
}

// alsoIn adds a setting to more groups.
func alsoIn(f Field, more ...Group) Field {
	f.Groups = append(f.Groups, more...)
	return f
}

// In reports whether the setting belongs to one of groups.
func (f Field) In(groups []Group) bool {
	for _, g := range f.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

func str(g Group, key, env, flag, usage string, ptr func(*Config) *string) Field {
	return field(g, "string", key, env, flag, usage,
		func(c *Config) string { return *ptr(c) },
		func(c *Config, v string) error { *ptr(c) = v; return nil })
}

// secret declares a string setting with no flag that `rtm config` never
// prints.
func secret(g Group, key, env, usage string, ptr func(*Config) *string) Field {
	f := str(g, key, env, "", usage, ptr)
	f.Secret = true
	return f
}

func list(g Group, key, env, flag, usage string, ptr func(*Config) *[]string) Field {
	return field(g, "strings", key, env, flag, usage,
		func(c *Config) string { return strings.Join(*ptr(c), ",") },
		func(c *Config, v string) error { *ptr(c) = splitList(v); return nil })
}

func secretList(g Group, key, env, usage string, ptr func(*Config) *[]string) Field {
	f := list(g, key, env, "", usage, ptr)
	f.Secret = true
	return f
}

func integer[T int | int16 | int32 | int64](g Group, key, env, flag, usage string, ptr func(*Config) *T, parse func(string) (T, error)) Field {
	return field(g, "int", key, env, flag, usage,
		func(c *Config) string { return strconv.FormatInt(int64(*ptr(c)), 10) },
		func(c *Config, v string) error {
			n, err := parse(v)
			if err != nil {
				return errNotA("a whole number", err)
			}
			*ptr(c) = n
			return nil
		})
}

func float(g Group, key, env, flag, usage string, ptr func(*Config) *float64) Field {
	return field(g, "float", key, env, flag, usage,
		func(c *Config) string { return strconv.FormatFloat(*ptr(c), 'g', -1, 64) },
		func(c *Config, v string) error {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return errNotA("a number", err)
			}
			*ptr(c) = n
			return nil
		})
}

func duration(g Group, key, env, flag, usage string, ptr func(*Config) *time.Duration) Field {
	return field(g, "duration", key, env, flag, usage,
		func(c *Config) string { return ptr(c).String() },
		func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return errNotA("a duration such as 30s or 5m", err)
			}
			*ptr(c) = d
			return nil
		})
}

func boolean(g Group, key, env, flag, usage string, ptr func(*Config) *bool) Field {
	return field(g, "bool", key, env, flag, usage,
		func(c *Config) string { return strconv.FormatBool(*ptr(c)) },
		func(c *Config, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return errNotA("true or false", err)
			}
			*ptr(c) = b
			return nil
		})
}

type parseError struct {
	want string
	err  error
}

func (e parseError) Error() string { return "not " + e.want }
func (e parseError) Unwrap() error { return e.err }

func errNotA(want string, err error) error { return parseError{want, err} }
