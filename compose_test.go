package rtm_test

import (
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestComposeFile checks docker-compose.yml's shape, since no Docker engine
// runs here: Kafka in KRaft mode, and a one-shot topics service that waits for
// Kafka to be healthy and runs `rtm topics apply` against it.
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck map[string]any `yaml:"healthcheck"`
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
	if tp.DependsOn["kafka"].Condition != "service_healthy" {
		t.Errorf("topics must wait for a healthy kafka: %+v", tp.DependsOn)
	}
	if tp.Environment["RTM_BROKERS"] != "kafka:19092" {
		t.Errorf("topics must reach kafka's internal listener, got RTM_BROKERS=%q", tp.Environment["RTM_BROKERS"])
	}
}
