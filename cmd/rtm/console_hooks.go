package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/console"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/report"
	"github.com/rtm-project/rtm/internal/simulate"
	"github.com/rtm-project/rtm/rules"
)

// consoleHooks are the console's two functions that other packages
// provide: a rule change tried on recorded traffic (the summary of rtm
// simulate, the same one rtm rules publish shows) and a campaign's results
// with hold-out uplift (rtm report).
func consoleHooks(cfg config.Config, cl *kgo.Client) (console.SimulateFunc, console.ReportFunc) {
	simulateFn := func(ctx context.Context, candidate []rules.TableSpec) (string, error) {
		from := time.Now().Add(-consoleSimulateWindow)
		rep, err := simulate.Run(ctx, cl, cfg.Partitions, candidate, simulate.Options{From: from})
		if err != nil {
			return "", fmt.Errorf("simulating on the traffic since %s: %w", from.UTC().Format(time.RFC3339), err)
		}
		return textOf(rep)
	}
	reportFn := func(ctx context.Context, campaign string) (string, error) {
		// A client of its own: report.Campaign adds partitions to the
		// client it reads with, so two pages shown at once must not share one.
		rc, err := kgo.NewClient(kafka.ReaderOpts(cl)...)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		rep, err := report.Campaign(ctx, rc, campaign, time.Now().Add(-consoleReportWindow))
		if err != nil {
			return "", err
		}
		return textOf(rep)
	}
	return simulateFn, reportFn
}

// consoleReportWindow is how far back the console's campaign results
// look: the default --since of rtm report.
const consoleReportWindow = 30 * 24 * time.Hour

// consoleSimulateWindow is how much recorded traffic the console's publish
// review replays: the default --from of rtm rules publish.
const consoleSimulateWindow = 24 * time.Hour

// textOf is a report as the console shows it: its text in a <pre>.
func textOf(rep textReport) (string, error) {
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		return "", err
	}
	return b.String(), nil
}
