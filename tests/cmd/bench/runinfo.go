package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"gorm.io/gorm"
)

// runInfo says how a run was made, for the line at the top of the
// markdown: a table in the README can then say which run it comes from.
type runInfo struct {
	server  string // e.g. "PostgreSQL 15.13", "SQLite 3.50.4"
	load    string // the load average before the run, "" where unknown
	machine string
}

// newRunInfo gathers what it can before the run: a failure to read the
// server's version or the load average leaves it out, never stops the run.
func newRunInfo(db *gorm.DB, kind string) runInfo {
	return runInfo{
		server:  serverVersion(db, kind),
		load:    loadAverage(),
		machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
	}
}

// serverVersion returns the database's name and version, or kind alone
// when it cannot be read.
func serverVersion(db *gorm.DB, kind string) string {
	var v string
	switch kind {
	case "postgres":
		if db.Raw("SHOW server_version").Scan(&v).Error == nil && v != "" {
			return "PostgreSQL " + strings.Fields(v)[0]
		}
	case "mysql":
		if db.Raw("SELECT VERSION()").Scan(&v).Error == nil && v != "" {
			// MariaDB: "10.11.11-MariaDB-0+deb12u1"; MySQL: "8.4.5".
			if n, _, ok := strings.Cut(v, "-MariaDB"); ok {
				return "MariaDB " + n
			}
			return "MySQL " + v
		}
	case "sqlite":
		if db.Raw("SELECT sqlite_version()").Scan(&v).Error == nil && v != "" {
			return "SQLite " + v
		}
	}
	return kind
}

// loadAverage returns the 1-minute load average, on Linux.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}

// line renders how b was run, in one paragraph.
func (ri runInfo) line(b *bench) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Run on %s against %s, %s", b.start.UTC().Format("2006-01-02 15:04 MST"), ri.server, ri.machine)
	if ri.load != "" {
		fmt.Fprintf(&sb, ", load average %s before and %s after", ri.load, loadAverage())
	}
	fmt.Fprintf(&sb, "; took %s. Each cell (workload × mode × implementation) %s per run, %s interleaved "+
		"(run 1 of every cell in a random order, then run 2, …); throughput is the median of the runs, with the slowest and the fastest; "+
		"%d goroutines under contention, %d calls per caller transaction.\n",
		b.ended.Sub(b.start).Round(time.Millisecond), b.budget.verb(), plural(b.runs, "run"), b.g, b.txops)
	return sb.String()
}

// plural returns "1 run", "5 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
