package rtm_test

import (
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/rtm-project/rtm/processors/pipeline"
)

// TestComposeFile checks docker-compose.yml's shape, since no Docker engine
// runs here: Kafka in KRaft mode, SQL Server initialised with the schema, a
// one-shot `rtm topics apply`, the CDC bridge, the collector, and one
// service per stage running `rtm run --stage NAME`.
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck map[string]any `yaml:"healthcheck"`
			Volumes     []string       `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	k, ok := f.Services["kafka"]
	if !ok || k.Environment["KAFKA_PROCESS_ROLES"] != "broker,controller" || k.Healthcheck == nil {
		t.Errorf("kafka service must run KRaft (broker,controller) with a healthcheck: %+v", k)
	}
	tp, ok := f.Services["topics"]
	if !ok || !slices.Equal(tp.Command, []string{"topics", "apply"}) {
		t.Fatalf("topics service must run `rtm topics apply`: %+v", tp)
	}
	if tp.DependsOn["kafka"].Condition != "service_healthy" || tp.Environment["RTM_BROKERS"] != "kafka:19092" {
		t.Errorf("topics must wait for a healthy kafka and use its internal listener: %+v", tp)
	}
	if m := f.Services["mssql"]; m.Environment["ACCEPT_EULA"] != "Y" || m.Healthcheck == nil {
		t.Errorf("mssql service: %+v", m)
	}
	if init := f.Services["mssql-init"]; !slices.Contains(init.Volumes, "./connectors/mssql/schema.sql:/schema.sql:ro") ||
		init.DependsOn["mssql"].Condition != "service_healthy" {
		t.Errorf("mssql-init must run connectors/mssql/schema.sql on a healthy server: %+v", init)
	}
	if _, err := os.Stat("connectors/mssql/schema.sql"); err != nil {
		t.Error(err)
	}
	if c := f.Services["cdc"]; !slices.Equal(c.Command, []string{"cdc"}) || c.Environment["RTM_MSSQL_DSN"] == "" ||
		c.DependsOn["mssql-init"].Condition != "service_completed_successfully" {
		t.Errorf("cdc service: %+v", c)
	}
	for _, s := range pipeline.Stages() {
		svc, ok := f.Services[s]
		if !ok || !slices.Equal(svc.Command, []string{"run", "--stage", s}) || svc.Environment["RTM_BROKERS"] != "kafka:19092" {
			t.Errorf("stage %s needs a service running `rtm run --stage %s`: %+v", s, s, svc)
		}
	}
}
