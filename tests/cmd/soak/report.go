package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The report at the end, and its verdict.

// reportLocks prints the block of lock errors: by class and by where they
// met the caller, then by class and call: deadlocks always, the others
// when there are some.
func (s *soak) reportLocks() {
	fmt.Printf("%-28s", "lock errors ("+s.cfg.db+")")
	for _, n := range siteNames {
		fmt.Printf(" %12s", n)
	}
	fmt.Println()
	for c := range nClasses {
		fmt.Printf("  %-26s", classNames[c])
		for st := range nSites {
			fmt.Printf(" %12d", s.lockErrors[c][st].Load())
		}
		fmt.Println()
	}
	for c := range nClasses {
		var by []string
		var total int64
		for k := range nKinds + 1 {
			n := s.lockBy[c][k].Load()
			total += n
			by = append(by, fmt.Sprintf("%s %d", kindNames[k], n))
		}
		if c == deadlock || total > 0 {
			fmt.Printf("  %-26s %s\n", classPlural[c]+" by call", strings.Join(by, ", "))
		}
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// report prints the counters and returns the exit status.
func (s *soak) report(elapsed time.Duration, hung bool, heapStart, heapEnd uint64, goroutinesStart int) int {
	var total int64
	var perKind []string
	for k := range nKinds {
		n := s.calls[k].Load()
		total += n
		perKind = append(perKind, fmt.Sprintf("%s %d", kindNames[k], n))
	}
	fail := false
	must := func(name string, v int64) {
		status := "ok"
		if v != 0 {
			status, fail = "FAIL", true
		}
		fmt.Printf("%-28s %10d  must be 0: %s\n", name, v, status)
	}
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

	fmt.Printf("\n%-28s %10s\n", "ran", elapsed.Round(time.Millisecond))
	fmt.Printf("%-28s %10d  %.0f/s (%s; %d rows in batches)\n", "calls", total, float64(total)/elapsed.Seconds(), strings.Join(perKind, ", "), s.batchRows.Load())
	fmt.Printf("%-28s %10d\n", "bare calls", s.bare.Load())
	fmt.Printf("%-28s %10d  (%d under REPEATABLE READ); %d failed\n", "transactions committed", s.committed.Load(), s.committedRR.Load(), s.failedTx.Load())
	fmt.Printf("%-28s %10d  transactions run again by RetryTransaction (of %d attempts)\n", "retries", s.retries.Load(), s.runs.Load())
	fmt.Printf("%-28s %10d  INSERTs tried again by the plugin (Stats().Retries)\n", "plugin retries", s.plugin.Stats().Retries)
	fmt.Printf("%-28s %10d  attempts ran out, or a bare call\n", "retryable errors escaped", s.escaped.Load())
	s.mu.Lock()
	var causes []string
	for c, n := range s.causes {
		causes = append(causes, fmt.Sprintf("%s ×%d", c, n))
	}
	s.mu.Unlock()
	slices.Sort(causes)
	if len(causes) == 0 {
		causes = append(causes, "none")
	}
	fmt.Printf("%-28s %10s  %s\n", "retryable errors by code", "", strings.Join(causes, ", "))
	fmt.Printf("%-28s %10d  statements (%.0f/s), %d rows deleted, %d retryable errors\n", "deletes", s.deletes.Load(), float64(s.deletes.Load())/elapsed.Seconds(), s.deletedRows.Load(), s.deleteFailed.Load())
	fmt.Printf("%-28s %10d\n", "rows created (per caller)", s.created.Load())
	s.reportLocks()
	must("bare batch deadlocks", s.lockErrors[deadlock][bareBatch].Load())
	must("non-retryable errors", s.nonRetryable.Load())
	if n := s.nonRetryable.Load(); n > 0 {
		var by []string
		for k := range nKinds + 1 {
			if n := s.nonRetryableBy[k].Load(); n > 0 {
				by = append(by, fmt.Sprintf("%s %d", kindNames[k], n))
			}
		}
		fmt.Printf("%-28s %10d  of them ErrConflictNotFound; by call: %s\n", "", s.conflictNF.Load(), strings.Join(by, ", "))
	}
	must("wrong rows", s.wrongRows.Load())
	must("duplicate-key errors", s.dupErrors.Load())
	must(fmt.Sprintf("keys stored twice (%d chk)", s.dupChecks.Load()), s.dupKeys.Load())
	if s.stored >= 0 {
		// Rows stored = created flags kept − rows deleted, up to the keys
		// of the bare calls that failed more.
		want, margin := s.kept.Load()-s.deletedRows.Load(), s.margin.Load()
		status := "ok"
		if s.stored < want || s.stored > want+margin {
			status, fail = "FAIL", true
		}
		fmt.Printf("%-28s %10d  created flags kept %d − rows deleted %d = %d, margin +%d: %s\n",
			"rows stored at the end", s.stored, s.kept.Load(), s.deletedRows.Load(), want, margin, status)
	}
	if s.cfg.unordered > 0 {
		// Informational: the deadlocks of the bare calls and of the
		// transactions in key order.
		fmt.Printf("%-28s %10d  (deadlocks with every lock taken in key order)\n", "deadlocks in ordered work", s.orderedDeadlocks.Load())
	}
	must("RetryError.Attempts wrong", s.mismatch.Load())
	must("cut off by the grace period", s.cancelled.Load())
	must("deleter/checker errors", s.harness.Load())
	if s.dupChecks.Load() == 0 {
		fmt.Printf("%-28s %10s  FAIL\n", "duplicate checks run", "0")
		fail = true
	}
	if hung {
		fmt.Printf("%-28s %10s  FAIL: workers still running %s after the grace period\n", "hung", "yes", 5*time.Second)
		fail = true
	}
	limit := uint64(float64(heapStart)*heapFactor) + heapSlack
	heapStatus := "flat: ok"
	if heapStart == 0 || heapEnd > limit {
		heapStatus, fail = "not flat: FAIL", true
	}
	fmt.Printf("%-28s %10s  after the %s warm-up; end %s, limit %s (end ≤ start×%.1f + %s): %s\n",
		"heap in use", mib(heapStart), s.cfg.warmup, mib(heapEnd), mib(limit), heapFactor, mib(heapSlack), heapStatus)
	fmt.Printf("%-28s %10d  with the workers running; %d at the end\n", "goroutines", goroutinesStart, runtime.NumGoroutine())
	st := s.plugin.Stats()
	fmt.Printf("%-28s Savepoints %d, Found %d, Created %d, Conflicts %d, Retries %d\n", "plugin stats", st.Savepoints, st.Found, st.Created, st.Conflicts, st.Retries)
	s.mu.Lock()
	if s.firstEscaped != "" {
		fmt.Println("  first retryable error escaped (not a failure): " + strings.ReplaceAll(s.firstEscaped, "\n", " | "))
	}
	for _, n := range s.notes {
		fmt.Println("  " + n)
	}
	s.mu.Unlock()
	if fail {
		fmt.Println("FAIL")
		return 1
	}
	fmt.Println("PASS")
	return 0
}
