// Package grule compares RTM's decision-table evaluation with
// hyperjumptech/grule-rule-engine on the same 200-row first-hit filter
// table (rules/rulestest). It is a separate module so that the main module
// does not depend on grule.
//
//	cd bench/grule && go test -run '^$' -bench . -benchmem -count 5
package grule
