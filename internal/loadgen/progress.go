package loadgen

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// barWidth is the number of cells in the terminal progress bar.
const barWidth = 20

// NewProgressBar returns a Config.Progress that shows a run on w. On a
// terminal it redraws one line in place (a bar of upgrades done, requests,
// failures, elapsed time) and ends it with a newline on the last call.
// Elsewhere — a log, a pipe, CI — it prints one plain line per finished
// upgrade. Write errors are ignored: progress is a courtesy.
func NewProgressBar(w io.Writer, isTTY bool) func(Progress) {
	if isTTY {
		return func(p Progress) {
			done := 0
			if p.UpgradesTotal > 0 {
				done = min(barWidth*p.UpgradesDone/p.UpgradesTotal, barWidth)
			}
			bar := strings.Repeat("#", done) + strings.Repeat("-", barWidth-done)
			// \x1b[K erases what a longer previous line left behind.
			fmt.Fprintf(w, "\r[%s] %d/%d upgrades  %d requests  %d failed  %s\x1b[K",
				bar, p.UpgradesDone, p.UpgradesTotal, p.Requests, p.Failures, p.Elapsed.Round(100*time.Millisecond))
			if p.Done {
				fmt.Fprintln(w)
			}
		}
	}
	var shown, failed int
	return func(p Progress) {
		for ; shown < p.UpgradesDone; shown++ {
			status := "ok"
			if p.UpgradesFailed > failed {
				status = "FAILED"
				failed++
			}
			fmt.Fprintf(w, "upgrade %d/%d %s: %d requests, %d failed, %s\n",
				shown+1, p.UpgradesTotal, status, p.Requests, p.Failures, p.Elapsed.Round(100*time.Millisecond))
		}
	}
}
