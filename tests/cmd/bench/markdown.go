package main

import (
	"fmt"
	"strings"
	"time"
)

// floorName is the implementation the others' throughput is a multiple of.
const floorName = "raw database/sql floor"

// floors returns the floor's median throughput per workload and mode
// (keyed by workload + mode).
func floors(rs []result) map[string]float64 {
	floor := map[string]float64{}
	for _, r := range rs {
		if r.impl == floorName {
			floor[r.workload+r.mode] = r.opsPerSec
		}
	}
	return floor
}

// markdown renders the results (in the order measureAll returns them: by
// workload, mode, implementation), under a line saying how they were made,
// with each throughput as a ratio of the floor's in the same workload and
// mode.
func markdown(b *bench, ri runInfo, rs []result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## %s: find-or-create, median of %s of %s per cell\n\n", ri.server, plural(b.runs, "run"), b.budget)
	sb.WriteString(ri.line(b))
	sb.WriteString("\n| workload | mode | implementation | ops/s | min–max | × floor | p50 | p99 | statements/op | round trips/op | savepoints/op | errors |\n")
	sb.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	floor := floors(rs)
	for _, r := range rs {
		ratio := "–"
		if f := floor[r.workload+r.mode]; f > 0 {
			ratio = fmt.Sprintf("%.2f", r.opsPerSec/f)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %.0f | %.0f–%.0f | %s | %s | %s | %.2f | %.2f | %.2f | %s |\n",
			r.workload, r.mode, r.impl, r.opsPerSec, r.minOps, r.maxOps, ratio, round(r.p50), round(r.p99),
			r.stmts, r.trips, r.sps, callErrors(r))
	}
	sb.WriteString("\np50 and p99 are over the calls of all runs, to within 2%; statements, round trips and savepoints are counted at the driver; errors are over all runs.\n")
	return sb.String()
}

func round(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// callErrors is the table cell for r's errors: how many of its calls
// failed, and the first error.
func callErrors(r result) string {
	if r.errors == 0 {
		return "0"
	}
	return fmt.Sprintf("**%d** of %d calls (%s)", r.errors, r.calls, shortErr(r.firstErr))
}

// errorCell is a table cell for n errors, the first of which is first:
// bold, with the error cut short, so that a failing implementation stands
// out.
func errorCell(n int64, first string) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("**%d** (%s)", n, shortErr(first))
}

// shortErr cuts err short for a table cell.
func shortErr(err string) string {
	if r := []rune(err); len(r) > 60 {
		err = string(r[:60]) + "…"
	}
	return strings.ReplaceAll(err, "|", "/")
}
