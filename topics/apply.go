package topics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Drift is a difference between a declared topic and the cluster.
type Drift struct {
	Topic string
	Field string
	Want  string
	Have  string
}

func (d Drift) String() string {
	return fmt.Sprintf("%s: %s is %s, catalogue says %s", d.Topic, d.Field, d.Have, d.Want)
}

// ApplyReport says what Apply did and found.
type ApplyReport struct {
	Created   []string
	Unchanged []string
	// Drift lists differences Apply does not repair: changing a partition
	// count remaps keys to partitions (breaking co-partitioning and local
	// state), and changing a cleanup policy can delete data, so both are left
	// to an operator.
	Drift []Drift
}

// Changed reports whether Apply changed anything or found drift.
func (r ApplyReport) Changed() bool { return len(r.Created) > 0 || len(r.Drift) > 0 }

func (r ApplyReport) String() string {
	if !r.Changed() {
		return fmt.Sprintf("no changes (%d topics checked)", len(r.Unchanged))
	}
	var b strings.Builder
	for _, t := range r.Created {
		fmt.Fprintf(&b, "created %s\n", t)
	}
	for _, d := range r.Drift {
		fmt.Fprintf(&b, "drift   %s\n", d)
	}
	fmt.Fprintf(&b, "%d created, %d unchanged, %d drifted", len(r.Created), len(r.Unchanged), len(r.Drift))
	return b.String()
}

// ErrDrift is returned by Apply, wrapped, when a topic differs from its
// declaration.
var ErrDrift = errors.New("topics differ from the catalogue")

// Apply creates every missing catalogue topic and checks existing ones
// (partitions, cleanup.policy). It is idempotent: a second run creates
// nothing and reports no changes. With dryRun it only reports.
func Apply(ctx context.Context, adm *kadm.Client, cat Catalogue, dryRun bool) (ApplyReport, error) {
	var rep ApplyReport
	if err := cat.Validate(); err != nil {
		return rep, fmt.Errorf("invalid catalogue: %w", err)
	}
	names := make([]string, len(cat.Topics))
	for i, t := range cat.Topics {
		names[i] = t.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return rep, fmt.Errorf("listing topics: %w", err)
	}
	var existing []string
	for _, t := range cat.Topics {
		d, ok := details[t.Name]
		if !ok || errors.Is(d.Err, kerrUnknownTopic) {
			if dryRun {
				rep.Created = append(rep.Created, t.Name+" (dry run)")
				continue
			}
			resp, err := adm.CreateTopic(ctx, t.Partitions, cat.Replication, t.Configs(), t.Name)
			if err == nil {
				err = resp.Err
			}
			if err != nil && !errors.Is(err, kerrTopicExists) {
				return rep, fmt.Errorf("creating topic %s: %w", t.Name, err)
			}
			rep.Created = append(rep.Created, t.Name)
			continue
		}
		if d.Err != nil {
			return rep, fmt.Errorf("describing topic %s: %w", t.Name, d.Err)
		}
		if got := int32(len(d.Partitions)); got != t.Partitions {
			rep.Drift = append(rep.Drift, Drift{t.Name, "partitions", fmt.Sprint(t.Partitions), fmt.Sprint(got)})
		}
		existing = append(existing, t.Name)
	}
	if len(existing) > 0 {
		cfgs, err := adm.DescribeTopicConfigs(ctx, existing...)
		if err != nil {
			return rep, fmt.Errorf("describing topic configs: %w", err)
		}
		for _, rc := range cfgs {
			if rc.Err != nil {
				return rep, fmt.Errorf("describing configs of %s: %w", rc.Name, rc.Err)
			}
			t, _ := cat.Lookup(rc.Name)
			have := string(Delete) // Kafka's default
			for _, c := range rc.Configs {
				if c.Key == "cleanup.policy" && c.Value != nil {
					have = *c.Value
				}
			}
			if have != string(t.Cleanup) {
				rep.Drift = append(rep.Drift, Drift{t.Name, "cleanup.policy", string(t.Cleanup), have})
			}
		}
	}
	for _, n := range existing {
		if !slices.ContainsFunc(rep.Drift, func(d Drift) bool { return d.Topic == n }) {
			rep.Unchanged = append(rep.Unchanged, n)
		}
	}
	slices.SortFunc(rep.Drift, func(a, b Drift) int { return strings.Compare(a.Topic+a.Field, b.Topic+b.Field) })
	if len(rep.Drift) > 0 {
		return rep, fmt.Errorf("%w: %d differences", ErrDrift, len(rep.Drift))
	}
	return rep, nil
}

var (
	kerrUnknownTopic = kerr.UnknownTopicOrPartition
	kerrTopicExists  = kerr.TopicAlreadyExists
)

// FitReplication returns want, lowered to the number of brokers in the
// cluster: a one-broker cluster (the embedded broker, a laptop Kafka)
// rejects any topic with replication above 1, while production keeps its 3.
func FitReplication(ctx context.Context, adm *kadm.Client, want int16) (int16, error) {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading cluster metadata: %w", err)
	}
	if n := int16(len(md.Brokers)); n > 0 && n < want {
		return n, nil
	}
	return want, nil
}
