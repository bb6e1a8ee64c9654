package testenv

import (
	"fmt"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2/types"
)

// FailureDigest, given to ReportAfterSuite, prints each failed spec's
// location and the last lines of its failure message at the very end of the
// suite's output. CI shows only the tail of a run; without this the cause of
// a failure (the last lines make dev printed, say) scrolls out of it.
func FailureDigest(lines int) func(types.Report) {
	return func(r types.Report) {
		for _, s := range r.SpecReports {
			if !s.Failed() {
				continue
			}
			fmt.Printf("failure digest: %s (%s, %s after %s):\n", s.FullText(), s.State, s.Failure.Location, s.RunTime.Round(time.Second))
			for _, l := range lastLines(s.Failure.Message, lines) {
				fmt.Printf("  | %s\n", l)
			}
		}
	}
}

// lastLines is the first non-blank line of msg and its last n-1, trimmed.
func lastLines(msg string, n int) []string {
	var kept []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			kept = append(kept, l)
		}
	}
	if len(kept) > n && n > 1 {
		kept = append([]string{kept[0], "..."}, kept[len(kept)-n+1:]...)
	}
	return kept
}
