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
// contention). For each implementation it reports throughput (the median of
// -runs runs), p50 and p99 latency, statements, round trips and savepoints
// per call as counted at the driver, and errors: a broken implementation is
// shown failing, not hidden; the command exits 1 if safefind itself failed.
// It prints a markdown table, writes it to -md, and draws -png.
//
// -cliff reproduces PostgreSQL's subtransaction cliff instead: see cliff.go.
// -upsert measures batch upserts instead, safefind's UpsertAll against
// GORM's OnConflict and a loop of single upserts: see upsert.go.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"github.com/safefind/safefind/tests/internal/driverrec"
	"github.com/safefind/safefind/tests/internal/race"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func main() {
	kind := flag.String("db", "sqlite", "database: sqlite, postgres or mysql")
	dsn := flag.String("dsn", "", "DSN (default: $SAFEFIND_POSTGRES_DSN or $SAFEFIND_MYSQL_DSN; SQLite: a temporary file)")
	ops := flag.Int("ops", 400, "calls per run and workload")
	runs := flag.Int("runs", 5, "runs per measurement; throughput is their median")
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
	b := &bench{db: db, kind: *kind, ops: *ops, runs: *runs, g: *goroutines, txops: *txops}
	if err := b.setup(); err != nil {
		log.Fatal(err)
	}
	var results []result
	for _, w := range workloads {
		for _, inTx := range []bool{false, true} {
			for _, r := range b.measureAll(w, inTx, chosen) {
				results = append(results, r)
				fmt.Fprintf(os.Stderr, "%-12s %-5s %-30s %9.0f ops/s  %5.2f trips/op  %d errors\n",
					r.workload, r.mode, r.impl, r.opsPerSec, r.trips, r.errors)
			}
		}
	}
	table := markdown(*kind, b, results)
	fmt.Print(table)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(table), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *png != "" {
		if err := chart(*png, *kind, results); err != nil {
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

// A workload is a mix of keys.
type workload struct {
	name       string
	hits       float64 // the share of calls on existing keys
	contention bool    // goroutines released together on each new key
}

var workloads = []workload{
	{"hits", 1, false},
	{"misses", 0, false},
	{"90% hits", 0.9, false},
	{"contention", 0, true},
}

func txLabel(inTx bool) string {
	if inTx {
		return "tx"
	}
	return "bare"
}

type bench struct {
	db                  *gorm.DB
	kind                string
	ops, runs, g, txops int
	existing            []string // keys that exist
	seq                 atomic.Int64
}

// setup creates the table afresh and the keys that the hits find.
func (b *bench) setup() error {
	m := b.db.Migrator()
	if err := m.DropTable(&Item{}); err != nil {
		return err
	}
	if err := b.db.AutoMigrate(&Item{}); err != nil {
		return err
	}
	rows := make([]Item, b.ops)
	for i := range rows {
		rows[i] = Item{Name: fmt.Sprintf("hit-%d", i)}
		b.existing = append(b.existing, rows[i].Name)
	}
	return b.db.CreateInBatches(&rows, 500).Error
}

// newKey returns a key no call has used.
func (b *bench) newKey() string { return fmt.Sprintf("new-%d", b.seq.Add(1)) }

// counts counts, at the driver, what one implementation's calls sent.
type counts struct{ stmts, trips, savepoints atomic.Int64 }

// Record implements driverrec.Sink: BEGIN, COMMIT and ROLLBACK are round
// trips, not statements.
func (c *counts) Record(sql string) {
	c.trips.Add(1)
	switch strings.ToUpper(sql) {
	case "BEGIN", "COMMIT", "ROLLBACK":
		return
	}
	c.stmts.Add(1)
	if len(sql) > 10 && strings.EqualFold(sql[:10], "SAVEPOINT ") {
		c.savepoints.Add(1)
	}
}

type result struct {
	workload, mode, impl string
	opsPerSec            float64
	p50, p99             time.Duration
	stmts, trips, sps    float64 // per call
	errors               int64
	firstErr             string
	// fatal: errors that are not the database's retryable end of a
	// transaction (safefind.IsRetryable)
	fatal         int64
	firstFatalErr string
	calls         int64
}

// meter gathers what one implementation did on one workload and mode.
type meter struct {
	c          counts
	ctx        context.Context // carries c to the driver
	rates      []float64
	calls      atomic.Int64
	errs       atomic.Int64
	firstErr   atomic.Value
	fatal      atomic.Int64
	firstFatal atomic.Value
	mu         sync.Mutex
	latencies  []time.Duration
}

func (m *meter) fail(err error) {
	m.errs.Add(1)
	m.firstErr.CompareAndSwap(nil, err.Error())
	if !safefind.IsRetryable(err) {
		m.fatal.Add(1)
		m.firstFatal.CompareAndSwap(nil, err.Error())
	}
}

func (m *meter) observe(lat []time.Duration) {
	m.mu.Lock()
	m.latencies = append(m.latencies, lat...)
	m.mu.Unlock()
}

// measureAll runs every implementation on one workload and mode, b.runs
// times, the implementations in a new random order each run, so that
// whatever the machine does meanwhile falls on all of them alike.
func (b *bench) measureAll(w workload, inTx bool, chosen []impl) []result {
	meters := make([]*meter, len(chosen))
	for i := range meters {
		meters[i] = &meter{}
		meters[i].ctx = driverrec.WithSink(context.Background(), &meters[i].c)
	}
	for range b.runs {
		for _, i := range rand.Perm(len(chosen)) {
			m, im := meters[i], chosen[i]
			start := time.Now()
			var n int
			if w.contention {
				n = b.contended(m, inTx, im)
			} else {
				n = b.sequential(m, w, inTx, im)
			}
			m.rates = append(m.rates, float64(n)/time.Since(start).Seconds())
		}
	}
	results := make([]result, len(chosen))
	for i, m := range meters {
		slices.Sort(m.rates)
		slices.Sort(m.latencies)
		r := result{workload: w.name, mode: txLabel(inTx), impl: chosen[i].name, opsPerSec: m.rates[len(m.rates)/2],
			errors: m.errs.Load(), fatal: m.fatal.Load(), calls: m.calls.Load()}
		if s, ok := m.firstErr.Load().(string); ok {
			r.firstErr = s
		}
		if s, ok := m.firstFatal.Load().(string); ok {
			r.firstFatalErr = s
		}
		if n := len(m.latencies); n > 0 {
			r.p50, r.p99 = m.latencies[n/2], m.latencies[n*99/100]
		}
		if n := float64(r.calls); n > 0 {
			r.stmts, r.trips, r.sps = float64(m.c.stmts.Load())/n, float64(m.c.trips.Load())/n, float64(m.c.savepoints.Load())/n
		}
		results[i] = r
	}
	return results
}

// sequential makes b.ops calls one after the other, in caller transactions
// of b.txops calls when inTx. It returns the calls made.
func (b *bench) sequential(m *meter, w workload, inTx bool, im impl) int {
	ctx, calls, fail := m.ctx, &m.calls, m.fail
	keys := make([]string, b.ops)
	for i := range keys {
		if rand.Float64() < w.hits {
			keys[i] = b.existing[rand.IntN(len(b.existing))]
		} else {
			keys[i] = b.newKey()
		}
	}
	lat := make([]time.Duration, 0, len(keys))
	call := func(db *gorm.DB, key string) error {
		start := time.Now()
		id, err := im.fn(ctx, db, inTx, key)
		lat = append(lat, time.Since(start))
		calls.Add(1)
		if err == nil && id == 0 {
			err = fmt.Errorf("no id for %s", key)
		}
		return err
	}
	for i := 0; i < len(keys); i += b.txops {
		chunk := keys[i:min(i+b.txops, len(keys))]
		if !inTx {
			for _, k := range chunk {
				if err := call(b.db, k); err != nil {
					fail(err)
				}
			}
			continue
		}
		tx := b.db.WithContext(ctx).Begin()
		if tx.Error != nil {
			fail(tx.Error)
			continue
		}
		failed := false
		for _, k := range chunk {
			if err := call(tx, k); err != nil {
				fail(err)
				failed = true
			}
		}
		if failed {
			tx.Rollback()
		} else if err := tx.Commit().Error; err != nil {
			fail(err)
		}
	}
	m.observe(lat)
	return len(keys)
}

// contended releases b.g goroutines together on each of b.ops/b.g new
// keys; every caller must get the same id. It returns the calls made.
func (b *bench) contended(m *meter, inTx bool, im impl) int {
	ctx, calls, fail := m.ctx, &m.calls, m.fail
	rounds := max(b.ops/b.g, 1)
	for range rounds {
		key := b.newKey()
		ids := make([]uint, b.g)
		lat := make([]time.Duration, b.g)
		race.Release(b.g, func(i int) {
			start := time.Now()
			var err error
			if inTx {
				err = b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					var err error
					ids[i], err = im.fn(ctx, tx, true, key)
					return err
				})
			} else {
				ids[i], err = im.fn(ctx, b.db, false, key)
			}
			lat[i] = time.Since(start)
			calls.Add(1)
			if err != nil {
				ids[i] = 0
				fail(err)
			}
		})
		var want uint
		for _, id := range ids {
			if id != 0 && want == 0 {
				want = id
			}
			if id != 0 && id != want {
				fail(fmt.Errorf("%s: ids %d and %d", key, want, id))
			}
		}
		m.observe(lat)
	}
	return rounds * b.g
}

// markdown renders the results, with each throughput as a ratio of the
// floor's in the same workload and mode.
func markdown(kind string, b *bench, rs []result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## %s: %d calls per run, median of %d runs, %d goroutines under contention, %d calls per caller transaction\n\n",
		kind, b.ops, b.runs, b.g, b.txops)
	sb.WriteString("| workload | mode | implementation | ops/s | × floor | p50 | p99 | statements/op | round trips/op | savepoints/op | errors |\n")
	sb.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	floor := map[string]float64{}
	for _, r := range rs {
		if r.impl == "raw database/sql floor" {
			floor[r.workload+r.mode] = r.opsPerSec
		}
	}
	for _, r := range rs {
		ratio := "–"
		if f := floor[r.workload+r.mode]; f > 0 {
			ratio = fmt.Sprintf("%.2f", r.opsPerSec/f)
		}
		errs := errorCell(r.errors, r.firstErr)
		fmt.Fprintf(&sb, "| %s | %s | %s | %.0f | %s | %s | %s | %.2f | %.2f | %.2f | %s |\n",
			r.workload, r.mode, r.impl, r.opsPerSec, ratio, round(r.p50), round(r.p99), r.stmts, r.trips, r.sps, errs)
	}
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

// errorCell is a table cell for n errors, the first of which is first:
// bold, with the error cut short, so that a failing implementation stands
// out.
func errorCell(n int64, first string) string {
	if n == 0 {
		return "0"
	}
	if len(first) > 60 {
		first = first[:60] + "…"
	}
	return fmt.Sprintf("**%d** (%s)", n, strings.ReplaceAll(first, "|", "/"))
}
