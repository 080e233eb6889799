// Command bench measures find-or-create side by side, in one run, on the
// same table, driver and connection pool: safefind's FindOrCreate and
// CreateOrFind, GORM's FirstOrCreate, statement-for-statement re-creations of
// Rails' create_or_find_by, Django's get_or_create and GitLab's
// safe_find_or_create_by, and a hand-written database/sql floor.
//
//	go run ./tests/cmd/bench                                # SQLite, no setup
//	go run ./tests/cmd/bench -db postgres                   # SAFEFIND_POSTGRES_DSN
//	go run ./tests/cmd/bench -db mysql                      # SAFEFIND_MYSQL_DSN
//	go run ./tests/cmd/bench -db postgres -cliff            # the subtransaction cliff
//	go run ./tests/cmd/bench -db mysql -upsert              # batch upserts
//
// Workloads: all hits, all misses, 90% hits, and contention (-goroutines
// released together on each new key), each bare and inside caller
// transactions (-txops calls per transaction; one per transaction under
// contention). Each cell (workload × mode × implementation) runs for
// -cell-time (or -ops calls), -runs times, interleaved: run 1 of every
// cell, then run 2 of every cell, and so on, so that the machine's drift
// falls on all cells alike. For each cell it reports throughput (the median
// of the runs, with their min–max), p50 and p99 latency, statements, round
// trips and savepoints per call as counted at the driver, and errors: a
// broken implementation is shown failing, not hidden; the command exits 1
// if safefind itself failed. It prints a markdown table under a line saying
// how the run was made (date, server version, machine, budget, runs),
// writes it to -md, and draws -png.
//
// -cliff reproduces PostgreSQL's subtransaction cliff instead: see cliff.go.
// -upsert measures batch upserts instead, safefind's UpsertAll against
// GORM's OnConflict and a loop of single upserts: see upsert.go.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func main() {
	kind := flag.String("db", "sqlite", "database: sqlite, postgres or mysql")
	dsn := flag.String("dsn", "", "DSN (default: $SAFEFIND_POSTGRES_DSN or $SAFEFIND_MYSQL_DSN; SQLite: a temporary file)")
	cellTime := flag.Duration("cell-time", time.Second, "time each cell (workload × mode × implementation) runs for, per run")
	ops := flag.Int("ops", 0, "calls per cell and run, instead of -cell-time (0: use -cell-time)")
	runs := flag.Int("runs", 5, "runs, interleaved over all cells; throughput is their median (-upsert: runs per implementation)")
	goroutines := flag.Int("goroutines", 8, "goroutines released together on each key (contention)")
	txops := flag.Int("txops", 10, "calls per caller transaction")
	md := flag.String("md", "bench.md", "write the markdown table here (empty: don't)")
	png := flag.String("png", "bench.png", "write the chart here (empty: don't)")
	only := flag.String("only", "", "comma-separated implementations to run (default: all)")
	cliff := flag.Bool("cliff", false, "reproduce PostgreSQL's subtransaction cliff instead (see cliff.go)")
	cliffRows := flag.Int("cliff-rows", 200, "-cliff: rows each application transaction find-or-creates")
	cliffTime := flag.Duration("cliff-time", 15*time.Second, "-cliff: how long each side runs")
	cliffXids := flag.Int("cliff-xids", 100_000, "-cliff: transactions committed past the idle one's horizon before measuring")
	cliffHold := flag.Duration("cliff-hold", time.Second, "-cliff: how long each application transaction stays open after its inserts")
	upsert := flag.Bool("upsert", false, "measure batch upserts instead (see upsert.go)")
	upsertRows := flag.Int("upsert-rows", 1000, "-upsert: rows per batch")
	upsertExisting := flag.Float64("upsert-existing", 0.5, "-upsert: the share of the batch's keys that exist already (half of them with a changed value)")
	flag.Parse()

	if *dsn == "" {
		*dsn = dbopen.EnvDSN(*kind)
	}
	if *kind == "sqlite" && *dsn == "" {
		dir, err := os.MkdirTemp("", "safefind-bench")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*dsn = "file:" + filepath.Join(dir, "bench.db") + "?_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate"
	}
	if *dsn == "" {
		log.Fatalf("no DSN for %s: set -dsn or $%s / $%s", *kind, dbopen.PostgresEnv, dbopen.MySQLEnv)
	}
	db, sqlDB, err := dbopen.Counted(*kind, *dsn, &gorm.Config{Logger: logger.Discard, TranslateError: true})
	if err != nil {
		log.Fatal(err)
	}
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(*goroutines * 2)
	sqlDB.SetMaxIdleConns(*goroutines * 2)
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	if *cliff {
		if *kind != "postgres" {
			log.Fatal("-cliff needs PostgreSQL: only its savepoints are subtransactions with a cache to overflow")
		}
		if err := runCliff(db, *cliffRows, *cliffXids, *cliffTime, *cliffHold); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *upsert {
		if err := runUpsert(db, *kind, *upsertRows, *upsertExisting, *runs, *md); err != nil {
			log.Fatal(err)
		}
		return
	}

	chosen := impls
	if *only != "" {
		chosen = nil
		for _, im := range impls {
			if slices.Contains(strings.Split(*only, ","), im.name) {
				chosen = append(chosen, im)
			}
		}
	}
	if *runs < 1 || *goroutines < 1 || *txops < 1 || *ops < 0 || (*ops == 0 && *cellTime <= 0) {
		log.Fatal("need -runs, -goroutines and -txops ≥ 1, and -ops ≥ 1 or -cell-time > 0")
	}
	b := &bench{db: db, budget: budget{calls: *ops, time: *cellTime}, runs: *runs, g: *goroutines, txops: *txops}
	if err := b.setup(); err != nil {
		log.Fatal(err)
	}
	ri := newRunInfo(db, *kind)
	results := b.measureAll(chosen)
	for _, r := range results {
		fmt.Fprintf(os.Stderr, "%-12s %-5s %-30s %9.0f ops/s (%.0f–%.0f)  %5.2f trips/op  %d errors\n",
			r.workload, r.mode, r.impl, r.opsPerSec, r.minOps, r.maxOps, r.trips, r.errors)
	}
	table := markdown(b, ri, results)
	fmt.Print(table)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(table), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *png != "" {
		if err := chart(*png, ri.server, b, results); err != nil {
			log.Fatal(err)
		}
	}
	for _, r := range results {
		if !strings.HasPrefix(r.impl, "safefind") {
			continue
		}
		// With Assign, callers that race on one new key inside
		// MySQL/MariaDB transactions can deadlock: each lost INSERT holds
		// a shared lock on the row that the other's UPDATE waits for. The
		// deadlock is retryable (the README says to use RetryTransaction);
		// anything else fails the bench, as does any error of the other
		// safefind calls.
		switch {
		case r.fatal > 0:
			log.Fatalf("%s failed on %s (%s): %s", r.impl, r.workload, r.mode, r.firstFatalErr)
		case r.errors > 0 && !(strings.Contains(r.impl, "Assign") && r.mode == txLabel(true)):
			log.Fatalf("%s failed on %s (%s): %s", r.impl, r.workload, r.mode, r.firstErr)
		}
	}
}
