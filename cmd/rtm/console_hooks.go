package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/console"
	"github.com/rtm-project/rtm/rules"
)

// consoleHooks are the console's two functions that other packages will
// provide: a rule change tried on recorded traffic (rtm simulate) and a
// campaign's results with hold-out uplift (rtm report). This file holds
// only these adapters, so that wiring the real ones replaces it whole.
//
// Until then: simulate says honestly that it is only the row-level diff
// against the tables in force, and reports are unavailable. Neither
// makes up a number.
func consoleHooks(_ config.Config, cl *kgo.Client) (console.SimulateFunc, console.ReportFunc) {
	simulate := func(ctx context.Context, candidate []rules.TableSpec) (string, error) {
		live, err := rules.List(ctx, cl)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		b.WriteString("row-level diff only: simulate not wired (no recorded traffic was replayed)\n\n")
		for _, c := range rules.Diff(live, candidate) {
			if c.Op == rules.OpRemoved {
				fmt.Fprintf(&b, "kept %s (not in this workbook)\n", c.Name)
				continue
			}
			fmt.Fprintln(&b, c)
		}
		return b.String(), nil
	}
	report := func(context.Context, string) (string, error) {
		return "", errors.New("reports are not available in this build")
	}
	return simulate, report
}
