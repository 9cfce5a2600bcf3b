package rules

import (
	"os"
	"testing"
	"time"
)

// TestMain stops the template budgets' clock (budgetClock): tests assert
// which budget a template spends, iterations or output, and must not
// depend on how fast the machine runs it. TestBudgetDeadline tests the
// deadline with a clock of its own.
func TestMain(m *testing.M) {
	stopped := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	budgetClock = func() time.Time { return stopped }
	os.Exit(m.Run())
}
