// Command soak runs safefind under sustained concurrency for a while and
// checks that nothing goes wrong: goroutines call FindOrCreate,
// CreateOrFind, FindOrCreateAll, CreateOrFindAll and UpsertAll on a small
// key space, bare (4 calls in 10) or inside safefind.RetryTransaction (1 to
// -txcalls calls per transaction, at times under REPEATABLE READ), while
// another goroutine hard-deletes random keys.
//
//	go run ./tests/cmd/soak                              # SQLite, 2 minutes, no setup
//	go run ./tests/cmd/soak -db postgres -duration 20s   # DSN from SAFEFIND_POSTGRES_DSN
//	go run ./tests/cmd/soak -db mysql -duration 20s      # DSN from SAFEFIND_MYSQL_DSN
//
// It works on a table of its own, soak_items, dropped and recreated at the
// start. Every result is checked: the row returned has the key asked for and
// a non-zero id, duplicates in a batch share one row, and only the first of
// them can be created. UpsertAll inside a transaction, whose rows stay
// locked until the end of it, is checked against a locking read of the rows:
// each element holds the stored row's id and the payload it wrote. At the
// end the rows stored must be the rows created minus the rows deleted: the
// created flags of the bare calls and of the committed transactions, the
// deleter's affected rows (a bare call that failed may have created rows
// before it failed, and widens the margin by its keys).
//
// It prints calls, retries, retryable errors by code, retryable errors that
// escaped (the attempts ran out, or a bare call), a block of lock errors
// (deadlocks, serialization failures, lock wait timeouts, others) by where
// they met the caller (a bare single-row call, a bare batch call, an
// attempt of a transaction that ran again, the last attempt of one that
// gave up) and by call, errors that are not retryable, wrong rows,
// duplicate-key errors returned to callers, keys stored twice (checked
// every -check and at the end), the row count against the created flags,
// heap in use after the warm-up and at the end, and the plugin's counters.
// A bare call's error is noted with the statements the plugin retried for
// it (its EventRetry events).
//
// -calls narrows the mix (-calls FindOrCreateAll,CreateOrFindAll), -bare
// sets the share of bare calls, -upsert-changes the share of UpsertAll
// calls that write the worker's payload rather than one that leaves the
// rows as they are: each change makes a new row version that REPEATABLE
// READ transactions on PostgreSQL fail on (40001), retried.
//
// The calls of a transaction take their keys in key order (call i from the
// i-th slice of the key space), as an application that wants no deadlock
// would; -unordered makes a fraction of them take keys anywhere, and then
// PostgreSQL's deadlock detector, which waits deadlock_timeout (1s) before
// it breaks a cycle, slows the whole run down. With every transaction in key
// order, the report counts deadlocks in transactions all the same. On
// PostgreSQL (40P01) a batch that finds a key it skipped deleted before its
// read inserts that key again, after the keys above it; on MariaDB (1213)
// InnoDB's next-key locks on the unique index deadlock two INSERTs in key
// order (one waits to lock a record, the other, which holds it, to insert
// into the gap before it), around keys the deleter removed. They are
// retried, and not a failure.
//
// The exit status is 1 if any of these is not 0: errors that are not
// retryable, wrong rows, duplicate-key errors, keys stored twice, bare batch
// calls (FindOrCreateAll, CreateOrFindAll, UpsertAll) that failed with a
// deadlock (40P01, 1213: they lock their keys in key order, and the plugin
// sends a statement that lost a deadlock again), rows stored
// outside the margin of the created flags, attempts that RetryError
// miscounts, calls cut off at the end of -grace, errors of the deleter or
// the checker; or if the heap is not flat: heap in use at the end above 1.5
// times the heap after the warm-up plus 8 MiB. Otherwise it is 0 (2 for bad
// flags or no database). Retryable errors that escaped are counted, not a
// failure: compare them across dialects.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Item is the soak's row, looked up by its unique key.
type Item struct {
	ID      uint64
	ItemKey string `gorm:"size:64;not null;uniqueIndex"`
	Payload string `gorm:"size:64"`
}

// TableName keeps the soak away from the tests' tables.
func (Item) TableName() string { return "soak_items" }

// The heap is flat when, at the end, heap in use ≤ start×heapFactor + heapSlack.
const (
	heapFactor = 1.5
	heapSlack  = 8 << 20
)

type config struct {
	db, dsn                string
	duration, grace, every time.Duration
	warmup                 time.Duration
	goroutines, keys       int
	batch, txCalls         int
	attempts, deletes      int
	unordered, bare        float64
	upsertChanges          float64
	kinds                  []kind // the calls to make, from -calls
	translate              bool
	seed                   uint64
}

// soak holds the run's database and counters.
type soak struct {
	cfg      config
	db       *gorm.DB
	plugin   *safefind.Plugin
	keys     []string
	isolated bool // the database takes REPEATABLE READ / READ COMMITTED

	calls                              [nKinds]atomic.Int64
	batchRows, created, bare           atomic.Int64
	committed, committedRR, failedTx   atomic.Int64
	runs, retries, mismatch            atomic.Int64
	escaped, nonRetryable, conflictNF  atomic.Int64
	wrongRows, dupErrors, cancelled    atomic.Int64
	deletes, deletedRows, deleteFailed atomic.Int64
	harness, dupChecks, dupKeys        atomic.Int64

	orderedDeadlocks atomic.Int64

	// Lock errors by class and site, and by class and the call (or
	// COMMIT) that met them, bare or in a transaction.
	lockErrors [nClasses][nSites]atomic.Int64
	lockBy     [nClasses][nKinds + 1]atomic.Int64

	// Errors that are not retryable, by the call (or COMMIT) that met them.
	nonRetryableBy [nKinds + 1]atomic.Int64

	// The row count at the end is kept − deletedRows, or up to margin more:
	// kept counts the created flags of the bare calls and of the committed
	// transactions, margin the keys of the bare calls that failed.
	kept, margin atomic.Int64
	stored       int64 // rows at the end; -1 when not counted

	mu     sync.Mutex
	notes  []string
	causes map[string]int64 // retryable errors by code, in and out of transactions

	firstEscaped string
}

func main() { os.Exit(run()) }

func run() int {
	var cfg config
	flag.StringVar(&cfg.db, "db", "sqlite", "database: sqlite, postgres or mysql")
	flag.StringVar(&cfg.dsn, "dsn", "", "DSN (default: $"+dbopen.PostgresEnv+" or $"+dbopen.MySQLEnv+"; for sqlite a temporary file)")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Minute, "how long the workers run")
	flag.DurationVar(&cfg.grace, "grace", 30*time.Second, "how long calls may run past -duration before they are cancelled and the run fails")
	flag.DurationVar(&cfg.warmup, "warmup", 0, "when to take the first heap reading (default: duration/10, at most 10s)")
	flag.DurationVar(&cfg.every, "check", 2*time.Second, "how often to look for keys stored twice")
	flag.IntVar(&cfg.goroutines, "goroutines", 32, "worker goroutines")
	flag.IntVar(&cfg.keys, "keys", 500, "size of the key space (small, so that callers collide)")
	flag.IntVar(&cfg.batch, "batch", 20, "most keys per batch call")
	flag.IntVar(&cfg.txCalls, "txcalls", 4, "most calls per transaction")
	flag.Float64Var(&cfg.unordered, "unordered", 0, "fraction of the transactions of several calls whose keys come in random order (they can deadlock)")
	flag.Float64Var(&cfg.bare, "bare", 0.4, "fraction of the calls made bare, outside any transaction")
	flag.Float64Var(&cfg.upsertChanges, "upsert-changes", 0.1, "fraction of the UpsertAll calls that write the worker's payload, not "+keptPayload+" (a change on most rows)")
	calls := flag.String("calls", strings.Join(kindNames[:nKinds], ","), "the calls to make, comma-separated")
	flag.IntVar(&cfg.attempts, "attempts", 5, "RetryAttempts of each transaction")
	flag.IntVar(&cfg.deletes, "deletes", 200, "deletes per second the deleter aims at, one statement at a time (0: no deleter)")
	flag.BoolVar(&cfg.translate, "translate-error", false, "open GORM with TranslateError")
	flag.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	if cfg.goroutines < 1 || cfg.batch < 1 || cfg.txCalls < 1 || cfg.keys < cfg.txCalls || cfg.duration <= 0 || cfg.deletes < 0 || cfg.bare < 0 || cfg.bare > 1 || cfg.upsertChanges < 0 || cfg.upsertChanges > 1 {
		fmt.Fprintln(os.Stderr, "soak: -goroutines, -batch, -txcalls and -duration must be positive, -keys at least -txcalls, -deletes not negative, -bare and -upsert-changes between 0 and 1")
		return 2
	}
	for name := range strings.SplitSeq(*calls, ",") {
		k := slices.Index(kindNames[:nKinds], strings.TrimSpace(name))
		if k < 0 {
			fmt.Fprintf(os.Stderr, "soak: -calls: no call %q (calls: %s)\n", name, strings.Join(kindNames[:nKinds], ", "))
			return 2
		}
		cfg.kinds = append(cfg.kinds, kind(k))
	}
	if cfg.warmup <= 0 {
		cfg.warmup = min(cfg.duration/10, 10*time.Second)
	}

	if cfg.dsn == "" {
		cfg.dsn = dbopen.EnvDSN(cfg.db)
	}
	if cfg.db == "sqlite" && cfg.dsn == "" {
		dir, err := os.MkdirTemp("", "safefind-soak")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 2
		}
		defer os.RemoveAll(dir)
		// Transactions take the write lock at BEGIN and queue on the busy
		// timeout (see docs/limits.md).
		cfg.dsn = "file:" + filepath.Join(dir, "soak.db") + "?_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate"
	}
	if cfg.dsn == "" {
		fmt.Fprintf(os.Stderr, "soak: no DSN for %s: set -dsn or $%s / $%s\n", cfg.db, dbopen.PostgresEnv, dbopen.MySQLEnv)
		return 2
	}
	db, err := dbopen.Open(cfg.db, cfg.dsn, &gorm.Config{Logger: logger.Discard, TranslateError: cfg.translate})
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	sqlDB, err := db.DB()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(cfg.goroutines + 4)
	sqlDB.SetMaxIdleConns(cfg.goroutines + 4)
	s := &soak{cfg: cfg, db: db, isolated: cfg.db != "sqlite"}
	s.plugin = safefind.New(safefind.WithObserver(observe))
	if err := db.Use(s.plugin); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	if err := db.Migrator().DropTable(&Item{}); err != nil {
		fmt.Fprintln(os.Stderr, "soak: drop table:", err)
		return 2
	}
	if err := db.AutoMigrate(&Item{}); err != nil {
		fmt.Fprintln(os.Stderr, "soak: create table:", err)
		return 2
	}
	for i := range cfg.keys {
		s.keys = append(s.keys, fmt.Sprintf("key-%06d", i)) // sorted as strings and as numbers
	}
	return s.run()
}

// run starts the workers, the deleter and the checker, takes the heap
// readings, and prints the report; it returns the exit status.
func (s *soak) run() int {
	cfg := s.cfg
	var calls []string
	for _, k := range cfg.kinds {
		calls = append(calls, kindNames[k])
	}
	fmt.Printf("safefind soak: %s, %d goroutines, %d keys, batches of up to %d, %.0f%% of calls bare, up to %d calls per transaction, deleter aiming at %d/s, %s (warm-up %s, grace %s), seed %d\ncalls: %s\n",
		cfg.db, cfg.goroutines, cfg.keys, cfg.batch, 100*cfg.bare, cfg.txCalls, cfg.deletes, cfg.duration, cfg.warmup, cfg.grace, cfg.seed, strings.Join(calls, ", "))
	start := time.Now()
	deadline := start.Add(cfg.duration)
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(cfg.grace))
	defer cancel()

	var workers sync.WaitGroup
	for w := range cfg.goroutines {
		workers.Go(func() { s.worker(ctx, w, deadline) })
	}
	stop := make(chan struct{})
	var helpers sync.WaitGroup
	if cfg.deletes > 0 {
		helpers.Go(func() { s.deleter(ctx, stop) })
	}
	helpers.Go(func() { s.checker(ctx, stop) })

	var heapStart uint64
	select {
	case <-time.After(cfg.warmup):
		heapStart = heapInuse()
	case <-ctx.Done():
	}
	goroutinesStart := runtime.NumGoroutine()

	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	hung := false
	select {
	case <-done:
	case <-ctx.Done():
		// The context's end cancels every call; give them a moment to return.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			hung = true
		}
	}
	close(stop)
	helpers.Wait()
	elapsed := time.Since(start)
	s.stored = -1
	if !hung {
		s.checkDuplicates(context.Background())
		if err := s.db.Model(&Item{}).Count(&s.stored).Error; err != nil {
			s.stored = -1
			s.harness.Add(1)
			s.note(fmt.Sprintf("row count: %v", err))
		}
	}
	heapEnd := heapInuse()
	return s.report(elapsed, hung, heapStart, heapEnd, goroutinesStart)
}
