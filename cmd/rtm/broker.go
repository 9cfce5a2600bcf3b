package main

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/broker"
)

func newBrokerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol broker (kfake), persisted under <data-dir>/kafka",
		Long: `Runs franz-go's kfake as a standalone broker on --broker-addr (default 127.0.0.1:9092).
Topics, records and committed offsets are kept under <data-dir>/kafka, so a restart resumes.
With broker.tls.cert_file/key_file it speaks only TLS; with broker.sasl.mechanism it requires
SASL (PLAIN or SCRAM) as the one superuser broker.sasl.username, whose password comes from
RTM_BROKER_SASL_PASSWORD or RTM_BROKER_SASL_PASSWORD_FILE.
For development and tests; production uses a real Kafka cluster (docker-compose.yml).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			bc := cfg.Broker
			bc.DataDir = filepath.Join(cfg.DataDir, "kafka")
			return broker.Run(cmd.Context(), bc, cfg.Logger())
		},
	}
}
