//go:build deploy

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/rtm-project/rtm/processors/pipeline"
)

// composeEnv are the variables docker-compose.yml requires (${X:?...}),
// as .env.example names them.
func composeEnv(t *testing.T) []string {
	t.Helper()
	env, err := dotenv.Read(filepath.Join(repoRoot, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// loadCompose loads docker-compose.yml as `docker compose --profile P`
// would: compose-go is the loader inside Compose v2, so interpolation,
// merge keys, the schema and the service graph are checked as there. The
// channel env file of the production profile is not read (the real one is
// gitignored; its example is checked on its own); the dev profile is loaded
// with env files resolved, as without that file.
func loadCompose(t *testing.T, profile string) *types.Project {
	t.Helper()
	o := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(repoRoot), cli.WithEnv(composeEnv(t)), cli.WithProfiles([]string{profile})}
	if profile == "production" {
		o = append(o, cli.WithoutEnvironmentResolution)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, "docker-compose.yml")}, o...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml (profile %s): %v", profile, err)
	}
	return p
}

const rtmImage = "rtm:latest"

// rtmInvocation is how service s runs rtm (the image's entrypoint).
func rtmInvocation(name string, s types.ServiceConfig) invocation {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return invocation{where: "compose service " + name, args: s.Command, env: env}
}

// TestComposeFile checks docker-compose.yml in both profiles: it loads
// with compose-go; the rtm image is built once from the repository and
// reused by name; every rtm service runs a command that exists with
// settings that exist and that its command reads; Kafka runs KRaft with
// SASL and no host port, and the rtm clients use SASL; every long-running
// rtm process has a /readyz healthcheck on its ops port and a stop grace
// period above its shutdown_timeout; every stage runs once per profile,
// with an instance_id and a named state volume of its own; the dev send
// stage reaches the sinks; the schema is applied with sqlcmd -b.
func TestComposeFile(t *testing.T) {
	for _, profile := range []string{"dev", "production"} {
		t.Run(profile, func(t *testing.T) {
			p := loadCompose(t, profile)
			built := 0
			stages := map[string]string{}
			volumes := map[string]string{}
			instances := map[string]string{}
			for name, s := range p.Services {
				if s.Image != rtmImage {
					continue
				}
				if s.Build != nil {
					built++
					if s.Build.Context != p.WorkingDir && s.Build.Context != "." {
						t.Errorf("%s builds from %q, not the repository", name, s.Build.Context)
					}
				} else if s.PullPolicy != types.PullPolicyNever {
					t.Errorf("%s reuses %s but may pull it from a registry (pull_policy %q)", name, rtmImage, s.PullPolicy)
				}
				inv := rtmInvocation(name, s)
				for _, e := range inv.check() {
					t.Error(e)
				}
				if !slices.Contains(longRunning, inv.command()) {
					continue
				}
				want := []string{"CMD", "/usr/local/bin/rtm", "probe", "http://127.0.0.1:" + inv.opsPort() + "/readyz"}
				if s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, want) {
					t.Errorf("%s: healthcheck must be %q (its ops port), is %+v", name, want, s.HealthCheck)
				}
				if host := strings.Split(inv.setting("http_addr"), ":")[0]; host != "0.0.0.0" {
					t.Errorf("%s: http_addr %q is not reachable from Prometheus on the compose network", name, inv.setting("http_addr"))
				}
				if g := s.StopGracePeriod; inv.command() != "rtm sinks" && (g == nil || time.Duration(*g) <= inv.shutdownTimeout()) {
					t.Errorf("%s: stop_grace_period %v must exceed shutdown_timeout %v", name, g, inv.shutdownTimeout())
				}
				id := inv.setting("instance_id")
				if id == "" {
					t.Errorf("%s: no RTM_INSTANCE_ID (the default, the container's host name, changes when it is recreated)", name)
				} else if other, dup := instances[id]; dup {
					t.Errorf("%s and %s share instance_id %q", name, other, id)
				}
				instances[id] = name
				if st := inv.stage(); st != "" {
					if other, dup := stages[st]; dup {
						t.Errorf("stage %s runs in %s and %s", st, name, other)
					}
					stages[st] = name
					vol := stateVolume(s, inv.setting("data_dir"))
					if vol == "" {
						t.Errorf("%s: no named volume on its data_dir %s", name, inv.setting("data_dir"))
					} else if other, dup := volumes[vol]; dup {
						t.Errorf("%s and %s share the state volume %s", name, other, vol)
					}
					volumes[vol] = name
					if s.HealthCheck.StartPeriod == nil {
						t.Errorf("%s: no healthcheck start_period for recovery", name)
					}
				}
			}
			if built != 1 {
				t.Errorf("%d services build %s; want exactly one (the others reuse the image)", built, rtmImage)
			}
			for _, st := range pipeline.Stages() {
				if _, ok := stages[st]; !ok {
					t.Errorf("profile %s: no service runs `rtm run --stage %s`", profile, st)
				}
			}
			checkComposeKafka(t, p)
			checkComposeSQL(t, p)
			switch profile {
			case "dev":
				checkComposeDevSend(t, p)
			case "production":
				checkComposeProductionSend(t, p)
			}
		})
	}
}

// stateVolume is the named volume s mounts on dir.
func stateVolume(s types.ServiceConfig, dir string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == dir {
			return v.Source
		}
	}
	return ""
}

func checkComposeKafka(t *testing.T, p *types.Project) {
	k, ok := p.Services["kafka"]
	if !ok {
		t.Fatal("no kafka service")
	}
	env := func(n string) string {
		if v := k.Environment[n]; v != nil {
			return *v
		}
		return ""
	}
	if !strings.HasPrefix(k.Image, "apache/kafka:") || env("KAFKA_PROCESS_ROLES") != "broker,controller" || k.HealthCheck == nil {
		t.Errorf("kafka must be apache/kafka in KRaft mode (broker,controller) with a healthcheck: %s %q", k.Image, env("KAFKA_PROCESS_ROLES"))
	}
	if len(k.Ports) != 0 {
		t.Errorf("kafka publishes %v on the host; it must be reachable on the compose network only", k.Ports)
	}
	for _, l := range strings.Split(env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"), ",") {
		name, proto, _ := strings.Cut(l, ":")
		if proto == "PLAINTEXT" && !strings.Contains(env("KAFKA_LISTENERS"), name+"://127.0.0.1:") {
			t.Errorf("kafka listener %s is PLAINTEXT beyond the container's loopback", name)
		}
	}
	mech := env("KAFKA_SASL_ENABLED_MECHANISMS")
	if mech == "" {
		t.Error("kafka enables no SASL mechanism")
	}
	for name, s := range p.Services {
		if s.Image != rtmImage {
			continue
		}
		inv := rtmInvocation(name, s)
		if inv.command() == "rtm sinks" {
			continue // no Kafka client
		}
		if inv.setting("brokers") != "kafka:9092" || inv.setting("kafka.sasl.mechanism") != mech ||
			inv.setting("kafka.sasl.username") == "" || inv.env["RTM_KAFKA_SASL_PASSWORD"] == "" {
			t.Errorf("%s must reach kafka:9092 with SASL %s (RTM_KAFKA_SASL_*): %v", name, mech, inv.env)
		}
		if strings.Contains(env("KAFKA_LISTENER_NAME_SASL_PLAIN_SASL_JAAS_CONFIG"),
			`user_`+inv.setting("kafka.sasl.username")+`="`+inv.env["RTM_KAFKA_SASL_PASSWORD"]+`"`) == false {
			t.Errorf("%s's SASL user is not one the broker knows", name)
		}
	}
}

func checkComposeSQL(t *testing.T, p *types.Project) {
	init, ok := p.Services["mssql-init"]
	if !ok {
		t.Fatal("no mssql-init service")
	}
	if !slices.Contains(init.Entrypoint, "-b") || !slices.Contains(init.Entrypoint, "/schema.sql") {
		t.Errorf("mssql-init must run the schema with sqlcmd -b (a SQL error fails it): %q", init.Entrypoint)
	}
	if init.DependsOn["mssql"].Condition != types.ServiceConditionHealthy {
		t.Error("mssql-init must wait for a healthy mssql")
	}
	if cdc := p.Services["cdc"]; cdc.DependsOn["mssql-init"].Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("cdc must wait for the schema")
	}
	schema := ""
	for _, v := range init.Volumes {
		if v.Target == "/schema.sql" {
			schema = v.Source
		}
	}
	data, err := os.ReadFile(schema)
	if err != nil {
		t.Fatalf("mssql-init's schema: %v", err)
	}
	for _, e := range schemaProblems(string(data)) {
		t.Errorf("%s: %s", schema, e)
	}
}

// schemaProblems finds a CREATE TABLE or ENABLE CHANGE_TRACKING without
// its guard: the script must run again on every `docker compose up`
// without error (sqlcmd -b would fail the service).
func schemaProblems(sql string) []string {
	var errs []string
	guarded := func(what, stmt, guard string) {
		re := regexp.MustCompile(`(?m)^(.*)\n\s*` + stmt)
		n := 0
		for _, m := range re.FindAllStringSubmatch(sql, -1) {
			n++
			if !strings.Contains(m[1], strings.ReplaceAll(guard, "TABLE", m[2])) {
				errs = append(errs, fmt.Sprintf("%s %s is not guarded by %s", what, m[2], strings.ReplaceAll(guard, "TABLE", m[2])))
			}
		}
		if c := strings.Count(sql, what); c != n || n == 0 {
			errs = append(errs, fmt.Sprintf("%d %s statements, %d checked", c, what, n))
		}
	}
	guarded("CREATE TABLE", `CREATE TABLE (dbo\.\w+)`, "IF OBJECT_ID(N'TABLE', N'U') IS NULL")
	guarded("ENABLE CHANGE_TRACKING", `ALTER TABLE (dbo\.\w+) ENABLE CHANGE_TRACKING`,
		"IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'TABLE'))")
	return errs
}

func TestSchemaProblems(t *testing.T) {
	guard := "IF OBJECT_ID(N'dbo.m', N'U') IS NULL\n"
	ct := "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.m'))\n"
	for _, tc := range []struct {
		name, sql string
		problems  int
	}{
		{"guarded", guard + "CREATE TABLE dbo.m (id INT);\n" + ct + "    ALTER TABLE dbo.m ENABLE CHANGE_TRACKING;\n", 0},
		{"unguarded create", "GO\nCREATE TABLE dbo.m (id INT);\n" + ct + "ALTER TABLE dbo.m ENABLE CHANGE_TRACKING;\n", 1},
		{"unguarded enable", guard + "CREATE TABLE dbo.m (id INT);\nGO\nALTER TABLE dbo.m ENABLE CHANGE_TRACKING;\n", 1},
		{"another table's guard", strings.ReplaceAll(guard, "dbo.m", "dbo.x") + "CREATE TABLE dbo.m (id INT);\n" + ct + "ALTER TABLE dbo.m ENABLE CHANGE_TRACKING;\n", 1},
		{"nothing", "SELECT 1;\n", 2},
	} {
		if got := schemaProblems(tc.sql); len(got) != tc.problems {
			t.Errorf("%s: %d problems %q, want %d", tc.name, len(got), got, tc.problems)
		}
	}
}

// checkComposeDevSend: the dev send stage shares the sinks' network
// namespace (they listen on loopback only) and points every channel at
// their addresses with the tokens they accept.
func checkComposeDevSend(t *testing.T, p *types.Project) {
	send, ok := p.Services["send-dev"]
	sk, ok2 := p.Services["sinks"]
	if !ok || !ok2 {
		t.Fatal("the dev profile needs send-dev and sinks")
	}
	if send.NetworkMode != "service:sinks" {
		t.Errorf("send-dev must join the sinks' network namespace, has network_mode %q", send.NetworkMode)
	}
	si, ss := rtmInvocation("sinks", sk), rtmInvocation("send-dev", send)
	if si.command() != "rtm sinks" {
		t.Errorf("sinks runs %s", si.command())
	}
	if si.opsPort() == ss.opsPort() {
		t.Errorf("sinks and send-dev share a network namespace and both serve ops on port %s", si.opsPort())
	}
	smtp := ss.setting("channels.smtp.host") + ":" + ss.setting("channels.smtp.port")
	if smtp != si.setting("sinks.smtp_addr") || ss.setting("channels.smtp.tls") != "none" {
		t.Errorf("send-dev mails %s (tls %s); the sink listens on %s", smtp, ss.setting("channels.smtp.tls"), si.setting("sinks.smtp_addr"))
	}
	for _, k := range []string{"channels.line.base_url", "channels.fcm.base_url"} {
		if ss.setting(k) != "http://"+si.setting("sinks.http_addr") {
			t.Errorf("send-dev %s = %q; the sink listens on %s", k, ss.setting(k), si.setting("sinks.http_addr"))
		}
	}
	if send.DependsOn["sinks"].Condition != types.ServiceConditionHealthy {
		t.Error("send-dev must wait for healthy sinks")
	}
}

// checkComposeProductionSend: the production send stage reads its
// channels from a gitignored env file whose committed example holds
// placeholders for settings the send stage reads.
func checkComposeProductionSend(t *testing.T, p *types.Project) {
	send, ok := p.Services["send"]
	if !ok {
		t.Fatal("the production profile needs a send service")
	}
	if _, dev := p.Services["sinks"]; dev {
		t.Error("the production profile starts the sinks")
	}
	if len(send.EnvFiles) != 1 || !send.EnvFiles[0].Required {
		t.Fatalf("send must require one env file, has %+v", send.EnvFiles)
	}
	rel, err := filepath.Rel(p.WorkingDir, send.EnvFiles[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ignore), "\n"), "/"+filepath.Dir(rel)+"/*.env") {
		t.Errorf(".gitignore must ignore %s (real credentials)", rel)
	}
	example, err := dotenv.Read(send.EnvFiles[0].Path + ".example")
	if err != nil {
		t.Fatal(err)
	}
	inv := rtmInvocation("send", send)
	inv.env = example
	inv.where = rel + ".example"
	for _, e := range inv.check() {
		t.Error(e)
	}
	for _, k := range []string{"RTM_LINE_TOKEN", "RTM_SMTP_PASSWORD", "RTM_FCM_PROJECT"} {
		if v, ok := example[k]; !ok || v != "CHANGE-ME" {
			t.Errorf("%s.example: %s must be the placeholder CHANGE-ME, is %q", rel, k, v)
		}
	}
}

// TestImageFiles: the image makes the data directory the services mount
// their state volumes on, owned by the user it runs as (a new named volume
// starts as a copy of it: root-owned, the stages could not write), and the
// build context leaves out local state, binaries, history and test data.
func TestImageFiles(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := ""
	for _, s := range loadCompose(t, "dev").Services {
		if s.Image == rtmImage {
			if d := rtmInvocation("", s).env["RTM_DATA_DIR"]; d != "" {
				dataDir = d
			}
		}
	}
	for _, want := range []string{"--chown=65532:65532 /out" + dataDir + " " + dataDir, "USER 65532:65532", "FROM gcr.io/distroless/static-debian12:nonroot"} {
		if dataDir == "" || !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q (data_dir %q)", want, dataDir)
		}
	}
	di, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(di), "\n")
	for _, want := range []string{".git", "var/", "bin/", "**/testdata/", ".env"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}
