package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestPrecedenceDefaultsFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rtm.yaml")
	os.WriteFile(path, []byte("brokers: [a:9092, b:9092]\npartitions: 8\nlog_level: debug\nbroker:\n  cleaner_interval: 5m\n"), 0o644)
	t.Setenv("RTM_CONFIG", path)
	t.Setenv("RTM_PARTITIONS", "12")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs)
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
			_, err := Load(nil)
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
