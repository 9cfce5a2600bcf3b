package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ErrGroupActive is returned by Replay for a group with running members:
// offsets of a live group cannot be moved under it.
var ErrGroupActive = errors.New("consumer group has active members; stop the stage first")

// Replay rewinds a stage's consumer group on all its input topics to the
// first offsets at or after from (the zero time: the earliest offsets), so
// the stage processes those records again when it starts. Replays are safe by
// construction: IDs are derived from their inputs, timing and send
// deduplicate on them, so nothing is sent twice, and member-state ignores
// change rows by version and behaviour and results by offset, so nothing is
// counted twice.
// It returns the number of partitions rewound.
func Replay(ctx context.Context, adm *kadm.Client, group string, from time.Time) (int, error) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("describing group %s: %w", group, err)
	}
	if g := described[group]; len(g.Members) > 0 {
		return 0, fmt.Errorf("replaying %s: %w (%d members)", group, ErrGroupActive, len(g.Members))
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("fetching offsets of %s: %w", group, err)
	}
	var topics []string
	for t := range committed {
		topics = append(topics, t)
	}
	if len(topics) == 0 {
		return 0, fmt.Errorf("replaying %s: the group has no committed offsets (has it ever run?)", group)
	}
	var listed kadm.ListedOffsets
	if from.IsZero() {
		listed, err = adm.ListStartOffsets(ctx, topics...)
	} else {
		listed, err = adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topics...)
	}
	if err != nil {
		return 0, fmt.Errorf("listing offsets: %w", err)
	}
	if err := listed.Error(); err != nil {
		return 0, fmt.Errorf("listing offsets: %w", err)
	}
	to := listed.Offsets()
	resp, err := adm.CommitOffsets(ctx, group, to)
	if err != nil {
		return 0, fmt.Errorf("committing offsets of %s: %w", group, err)
	}
	if err := resp.Error(); err != nil {
		return 0, fmt.Errorf("committing offsets of %s: %w", group, err)
	}
	n := 0
	to.Each(func(kadm.Offset) { n++ })
	return n, nil
}
