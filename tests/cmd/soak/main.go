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
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/safefind/safefind"
	"github.com/safefind/safefind/dialect"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
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

// kind is one of the five calls.
type kind int

const (
	findOrCreate kind = iota
	createOrFind
	findOrCreateAll
	createOrFindAll
	upsertAll
	nKinds

	// atCommit is no call: a transaction's COMMIT failed.
	atCommit = nKinds
)

var kindNames = [nKinds + 1]string{"FindOrCreate", "CreateOrFind", "FindOrCreateAll", "CreateOrFindAll", "UpsertAll", "COMMIT"}

// call is one planned call, run once bare or once per transaction attempt.
type call struct {
	kind  kind
	keys  []string // one for the single-row calls
	where bool     // single-row: the key in a Where chain, not a struct condition
	ptrs  bool     // batch: []*Item rather than []Item
	cols  bool     // UpsertAll: name the update column rather than take the default (the same: payload)
	keep  bool     // UpsertAll: write keptPayload, which leaves a row that has it unchanged, not the worker's
}

// keptPayload is the payload UpsertAll writes but for a fraction
// -upsert-changes of its calls, which write the worker's: a row that
// already has it is left as it is (no new row version on PostgreSQL), as
// most upserts of a sync job would.
const keptPayload = "kept"

// batch reports whether the call is one of the batch calls.
func (c call) batch() bool { return c.kind != findOrCreate && c.kind != createOrFind }

// lockClass is what a retryable error is, for the report's block of lock
// errors.
type lockClass int

const (
	deadlock      lockClass = iota // PostgreSQL 40P01, MySQL/MariaDB 1213
	serialization                  // PostgreSQL 40001
	lockTimeout                    // MySQL/MariaDB 1205
	otherLock                      // MariaDB 1020, ErrStaleSnapshot, SQLite busy, a failed COMMIT
	nClasses
)

var (
	classNames  = [nClasses]string{"deadlock (40P01, 1213)", "serialization (40001)", "lock wait timeout (1205)", "other retryable"}
	classPlural = [nClasses]string{"deadlocks", "serializations", "lock wait timeouts", "other retryable"}
)

// site is where a retryable error met the caller.
type site int

const (
	bareSingle site = iota // a bare FindOrCreate or CreateOrFind returned it
	bareBatch              // a bare FindOrCreateAll, CreateOrFindAll or UpsertAll returned it
	txRetried              // an attempt failed with it, and RetryTransaction ran the transaction again
	txEscaped              // the last attempt failed with it: the attempts ran out
	nSites
)

var siteNames = [nSites]string{"bare single", "bare batch", "tx retried", "tx escaped"}

func (c call) String() string {
	if !c.batch() {
		return fmt.Sprintf("%s(%s)", kindNames[c.kind], c.keys[0])
	}
	if slices.IsSorted(c.keys) && len(slices.Compact(slices.Clone(c.keys))) == len(c.keys) {
		return fmt.Sprintf("%s(%d keys: %s…%s)", kindNames[c.kind], len(c.keys), c.keys[0], c.keys[len(c.keys)-1])
	}
	return fmt.Sprintf("%s(%d keys in random order: %s…)", kindNames[c.kind], len(c.keys), c.keys[0])
}

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
		// timeout (see the README's Limits).
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

// worker runs calls until the deadline: a fraction -bare (4 in 10) bare,
// the others inside RetryTransaction.
func (s *soak) worker(ctx context.Context, w int, deadline time.Time) {
	r := rand.New(rand.NewPCG(s.cfg.seed, uint64(w)))
	payload := fmt.Sprintf("worker %d", w)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.Float64() < s.cfg.bare {
			c := s.plan(r, s.keys)
			s.bare.Add(1)
			var retries int
			created, err := s.do(s.db.WithContext(context.WithValue(ctx, retriesKey{}, &retries)), c, payload, false)
			if err != nil {
				// It may have created rows before it failed.
				s.margin.Add(int64(len(c.keys)))
				if safefind.IsRetryable(err) {
					s.retryCause(err, true)
				}
				st := bareSingle
				if c.batch() {
					st = bareBatch
				}
				s.classify(fmt.Sprintf("bare %s (%d statements retried)", c, retries), st, c.kind, err)
				continue
			}
			s.kept.Add(int64(created))
			continue
		}
		s.transaction(ctx, r, payload)
	}
}

// retriesKey is the context key of a bare call's count of the statements
// the plugin retried (EventRetry).
type retriesKey struct{}

// observe counts a bare call's retried statements, on its goroutine.
func observe(ctx context.Context, e safefind.Event) {
	if n, ok := ctx.Value(retriesKey{}).(*int); ok && e.Kind == safefind.EventRetry {
		*n += max(e.Rows, 1)
	}
}

// plan picks a call and its keys among keys: single keys uniformly;
// batches either a sorted run of consecutive keys or random keys in random
// order, duplicates included.
func (s *soak) plan(r *rand.Rand, keys []string) call {
	c := call{kind: s.cfg.kinds[r.IntN(len(s.cfg.kinds))], where: r.IntN(2) == 0, ptrs: r.IntN(2) == 0, cols: r.IntN(2) == 0,
		keep: r.Float64() >= s.cfg.upsertChanges}
	if !c.batch() {
		c.keys = []string{keys[r.IntN(len(keys))]}
		return c
	}
	n := s.cfg.batch
	if r.IntN(2) == 0 {
		n = 1 + r.IntN(s.cfg.batch)
	}
	if r.IntN(2) == 0 {
		n = min(n, len(keys))
		first := r.IntN(len(keys) - n + 1)
		c.keys = keys[first : first+n]
		return c
	}
	c.keys = make([]string, n)
	for i := range c.keys {
		c.keys[i] = keys[r.IntN(len(keys))]
	}
	return c
}

// transaction runs 1 to -txcalls calls in one RetryTransaction, under the
// database's default isolation or, on PostgreSQL and MySQL/MariaDB, at times
// under REPEATABLE READ (and READ COMMITTED on MySQL/MariaDB, whose default
// is REPEATABLE READ).
//
// A transaction of several calls is ordered, except for a fraction
// -unordered of them: call i takes its keys from the i-th of as many
// consecutive slices of the key space, so that its rows, which safefind
// inserts in key order within a call, are locked in key order across the
// whole transaction. Unordered transactions deadlock, as any application's
// would, and PostgreSQL's deadlock detector takes deadlock_timeout (1s) to
// break each cycle.
func (s *soak) transaction(ctx context.Context, r *rand.Rand, payload string) {
	plan := make([]call, 1+r.IntN(s.cfg.txCalls))
	ordered := len(plan) == 1 || r.Float64() >= s.cfg.unordered
	for i := range plan {
		if ordered {
			plan[i] = s.plan(r, s.keys[i*len(s.keys)/len(plan):(i+1)*len(s.keys)/len(plan)])
		} else {
			plan[i] = s.plan(r, s.keys)
		}
	}
	opts := []safefind.RetryOption{safefind.RetryAttempts(s.cfg.attempts)}
	iso := sql.LevelDefault
	if s.isolated {
		switch r.IntN(3) {
		case 1:
			iso = sql.LevelRepeatableRead
		case 2:
			if s.cfg.db == "mysql" {
				iso = sql.LevelReadCommitted
			}
		}
		if iso != sql.LevelDefault {
			opts = append(opts, safefind.RetryTxOptions(&sql.TxOptions{Isolation: iso}))
		}
	}
	// Each attempt's failure: the call that failed and its error, or
	// atCommit and nil when the function returned nil.
	type failure struct {
		kind kind
		err  error
	}
	var (
		attempts []failure
		created  int // the last attempt's created flags
	)
	err := safefind.RetryTransaction(s.db.WithContext(ctx), func(tx *gorm.DB) error {
		attempts = append(attempts, failure{kind: atCommit})
		created = 0
		for _, c := range plan {
			n, err := s.do(tx, c, payload, true)
			if err != nil {
				if safefind.IsRetryable(err) {
					s.retryCause(err, ordered)
				}
				attempts[len(attempts)-1] = failure{c.kind, err}
				return err
			}
			created += n
		}
		return nil
	}, opts...)
	runs := len(attempts)
	s.runs.Add(int64(runs))
	if runs > 1 {
		s.retries.Add(int64(runs - 1))
	}
	for _, f := range attempts[:max(runs-1, 0)] {
		s.countLock("transaction attempt", txRetried, f.kind, f.err)
	}
	if err == nil {
		s.kept.Add(int64(created))
		s.committed.Add(1)
		if iso == sql.LevelRepeatableRead {
			s.committedRR.Add(1)
		}
		return
	}
	s.failedTx.Add(1)
	where := fmt.Sprintf("transaction (%s, %d calls, ordered %t, first %s)", iso, len(plan), ordered, plan[0])
	var re *safefind.RetryError
	if !errors.As(err, &re) {
		s.nonRetryable.Add(1)
		s.note(fmt.Sprintf("%s: RetryTransaction returned %T, not *RetryError: %v", where, err, err))
		return
	}
	if re.Attempts != runs {
		s.mismatch.Add(1)
		s.note(fmt.Sprintf("%s: RetryError.Attempts = %d, but the function ran %d times", where, re.Attempts, runs))
	}
	last := failure{kind: atCommit}
	if runs > 0 {
		last = attempts[runs-1]
	}
	s.classify(where, txEscaped, last.kind, err)
}

// do runs one call on tx and checks its result; inTx says tx is a
// transaction's. It returns how many rows the call says it created.
func (s *soak) do(tx *gorm.DB, c call, payload string, inTx bool) (int, error) {
	s.calls[c.kind].Add(1)
	if c.kind == upsertAll && c.keep {
		payload = keptPayload
	}
	if !c.batch() {
		fn := safefind.FindOrCreate
		if c.kind == createOrFind {
			fn = safefind.CreateOrFind
		}
		k := c.keys[0]
		item := Item{Payload: payload}
		var (
			created bool
			err     error
		)
		if c.where {
			created, err = fn(tx.Where("item_key = ?", k), &item)
		} else {
			created, err = fn(tx, &item, Item{ItemKey: k})
		}
		if err != nil {
			return 0, err
		}
		if item.ItemKey != k || item.ID == 0 {
			s.wrong(fmt.Sprintf("%s returned id %d key %q", c, item.ID, item.ItemKey))
		}
		if created {
			s.created.Add(1)
			return 1, nil
		}
		return 0, nil
	}

	fn := func(tx *gorm.DB, rows any) ([]bool, error) {
		switch c.kind {
		case findOrCreateAll:
			return safefind.FindOrCreateAll(tx, rows, "item_key")
		case createOrFindAll:
			return safefind.CreateOrFindAll(tx, rows, "item_key")
		}
		if c.cols {
			return safefind.UpsertAll(tx, rows, []string{"item_key"}, "Payload")
		}
		return safefind.UpsertAll(tx, rows, []string{"item_key"})
	}
	s.batchRows.Add(int64(len(c.keys)))
	got := make([]Item, len(c.keys))
	var (
		created []bool
		err     error
	)
	if c.ptrs {
		rows := make([]*Item, len(c.keys))
		for i, k := range c.keys {
			rows[i] = &Item{ItemKey: k, Payload: payload}
		}
		if created, err = fn(tx, &rows); err != nil {
			return 0, err
		}
		for i, row := range rows {
			got[i] = *row
		}
	} else {
		rows := make([]Item, len(c.keys))
		for i, k := range c.keys {
			rows[i] = Item{ItemKey: k, Payload: payload}
		}
		if created, err = fn(tx, &rows); err != nil {
			return 0, err
		}
		copy(got, rows)
	}
	n := s.checkBatch(c, got, created)
	if c.kind == upsertAll && inTx {
		if err := s.checkUpsert(tx, c, got, payload); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// checkBatch checks a batch's rows: each has its key and an id, elements of
// one key share one row, and only the first of them can be created. It
// returns how many are created.
func (s *soak) checkBatch(c call, got []Item, created []bool) int {
	if len(created) != len(got) {
		s.wrong(fmt.Sprintf("%s returned %d created flags for %d rows", c, len(created), len(got)))
		return 0
	}
	n := 0
	first := make(map[string]int, len(got))
	for i, row := range got {
		k := c.keys[i]
		if row.ItemKey != k || row.ID == 0 {
			s.wrong(fmt.Sprintf("%s: element %d (key %q) got id %d key %q", c, i, k, row.ID, row.ItemKey))
		}
		if j, seen := first[k]; seen {
			if got[j].ID != row.ID || created[i] {
				s.wrong(fmt.Sprintf("%s: key %q: element %d got id %d (created %t), element %d id %d", c, k, j, got[j].ID, created[j], i, row.ID))
			}
		} else {
			first[k] = i
		}
		if created[i] {
			n++
		}
	}
	s.created.Add(int64(n))
	return n
}

// checkUpsert checks UpsertAll's rows inside a transaction, which holds
// them locked (inserted, updated, or met by the conflict clause) until it
// ends: a locking read finds each key once, with the id its elements got
// and the payload they wrote. The read locks (FOR UPDATE) so that a
// MySQL/MariaDB REPEATABLE READ snapshot cannot hide a row, through the
// key's index: a table scan, which MariaDB picks at times on a small
// table, would lock every row and deadlock everyone. SQLite's transaction
// holds the whole database.
func (s *soak) checkUpsert(tx *gorm.DB, c call, got []Item, payload string) error {
	q := tx.Where("item_key IN ?", c.keys)
	switch s.cfg.db {
	case "mysql":
		q = q.Table("soak_items FORCE INDEX (idx_soak_items_item_key)").Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	case "postgres":
		q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	}
	var rows []Item
	if err := q.Find(&rows).Error; err != nil {
		return err
	}
	stored := make(map[string]Item, len(rows))
	for _, row := range rows {
		if _, twice := stored[row.ItemKey]; twice {
			s.wrong(fmt.Sprintf("%s: key %q read twice", c, row.ItemKey))
		}
		stored[row.ItemKey] = row
	}
	for i, row := range got {
		st, ok := stored[c.keys[i]]
		switch {
		case !ok:
			s.wrong(fmt.Sprintf("%s: element %d (key %q, id %d): no row in its transaction", c, i, c.keys[i], row.ID))
		case st.ID != row.ID || st.Payload != payload || row.Payload != payload:
			s.wrong(fmt.Sprintf("%s: element %d (key %q) holds id %d payload %q; stored id %d payload %q; written %q", c, i, c.keys[i], row.ID, row.Payload, st.ID, st.Payload, payload))
		}
	}
	return nil
}

// classify counts an error that reached the caller, from a call of kind k
// at st (bare, or the last attempt of a transaction): a retryable one (the
// retries ran out, or a bare call), the context's end, a duplicate-key
// error, or any other error. ErrConflictNotFound wraps the duplicate-key
// error, and is counted as not retryable.
func (s *soak) classify(where string, st site, k kind, err error) {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		s.cancelled.Add(1)
		s.note(fmt.Sprintf("%s: cut off at the end of the grace period: %v", where, err))
	case safefind.IsRetryable(err):
		s.escaped.Add(1)
		s.countLock(where, st, k, err)
		s.mu.Lock()
		if s.firstEscaped == "" {
			s.firstEscaped = fmt.Sprintf("%s: %v", where, err)
		}
		s.mu.Unlock()
	case errors.Is(err, safefind.ErrConflictNotFound):
		s.conflictNF.Add(1)
		s.nonRetryable.Add(1)
		s.nonRetryableBy[k].Add(1)
		s.note(fmt.Sprintf("%s: %v", where, err))
	case s.isDuplicate(err):
		s.dupErrors.Add(1)
		s.note(fmt.Sprintf("%s: duplicate-key error: %v", where, err))
	default:
		s.nonRetryable.Add(1)
		s.nonRetryableBy[k].Add(1)
		s.note(fmt.Sprintf("%s: %v", where, err))
	}
}

// isDuplicate recognises a unique violation with or without TranslateError,
// through the dialector's translator.
func (s *soak) isDuplicate(err error) bool {
	t, _ := s.db.Dialector.(gorm.ErrorTranslator)
	return dialect.Walk(err, func(e error) bool {
		return errors.Is(e, gorm.ErrDuplicatedKey) || (t != nil && errors.Is(t.Translate(e), gorm.ErrDuplicatedKey))
	})
}

// lockClassOf tells what a retryable error is; nil (a transaction whose
// COMMIT failed, its error unseen) is otherLock.
func lockClassOf(err error) lockClass {
	var (
		pe *pgconn.PgError
		me *mysql.MySQLError
	)
	switch {
	case errors.As(err, &pe):
		switch pe.Code {
		case "40P01":
			return deadlock
		case "40001":
			return serialization
		}
	case errors.As(err, &me):
		switch me.Number {
		case 1213:
			return deadlock
		case 1205:
			return lockTimeout
		}
	}
	return otherLock
}

// countLock counts a retryable error of a call of kind k (or atCommit) at
// st, in the report's block of lock errors. A bare batch call's deadlock is
// a failure, noted with where.
func (s *soak) countLock(where string, st site, k kind, err error) {
	class := lockClassOf(err)
	s.lockErrors[class][st].Add(1)
	s.lockBy[class][k].Add(1)
	if class == deadlock && st == bareBatch {
		s.note(fmt.Sprintf("%s: deadlock in a bare batch call: %v", where, err))
	}
}

// retryCause counts a retryable error a call returned, by its code, and
// the deadlocks in ordered work (a bare call, or an ordered transaction).
func (s *soak) retryCause(err error, ordered bool) {
	var (
		pe    *pgconn.PgError
		me    *mysql.MySQLError
		se    sqlite3.Error
		cause = "other"
	)
	if ordered && lockClassOf(err) == deadlock {
		s.orderedDeadlocks.Add(1)
	}
	switch {
	case errors.Is(err, safefind.ErrStaleSnapshot):
		cause = "ErrStaleSnapshot"
	case errors.As(err, &pe):
		cause = "postgres " + pe.Code
	case errors.As(err, &me):
		cause = fmt.Sprintf("mysql %d", me.Number)
	case errors.As(err, &se):
		cause = "sqlite " + se.Code.Error()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.causes == nil {
		s.causes = map[string]int64{}
	}
	s.causes[cause]++
}

func (s *soak) wrong(msg string) {
	s.wrongRows.Add(1)
	s.note("wrong row: " + msg)
}

// note keeps the first few messages for the report.
func (s *soak) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.notes) < 8 {
		s.notes = append(s.notes, strings.ReplaceAll(msg, "\n", " | "))
	}
}

// deleter hard-deletes random keys, bare, at -deletes per second: mostly
// one key, one time in ten several.
func (s *soak) deleter(ctx context.Context, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(s.cfg.seed, ^uint64(0)))
	tick := time.NewTicker(max(time.Second/time.Duration(s.cfg.deletes), time.Microsecond))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-stop:
			return
		}
		n := 1
		if r.IntN(10) == 0 {
			n = 2 + r.IntN(s.cfg.batch)
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = s.keys[r.IntN(len(s.keys))]
		}
		res := s.db.WithContext(ctx).Where("item_key IN ?", keys).Delete(&Item{})
		s.deletes.Add(1)
		switch {
		case res.Error == nil:
			s.deletedRows.Add(res.RowsAffected)
		case safefind.IsRetryable(res.Error):
			s.deleteFailed.Add(1)
		case ctx.Err() != nil:
			return
		default:
			s.harness.Add(1)
			s.note(fmt.Sprintf("deleter: %v", res.Error))
		}
	}
}

// checker looks for keys stored twice every -check.
func (s *soak) checker(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(s.cfg.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.checkDuplicates(ctx)
		case <-stop:
			return
		}
	}
}

// checkDuplicates counts the keys stored more than once (the unique index
// should make it 0), and keeps the largest count seen.
func (s *soak) checkDuplicates(ctx context.Context) {
	var dups []struct {
		ItemKey string
		N       int64
	}
	err := s.db.WithContext(ctx).Model(&Item{}).Select("item_key, COUNT(*) AS n").
		Group("item_key").Having("COUNT(*) > 1").Scan(&dups).Error
	if err != nil {
		if ctx.Err() == nil {
			s.harness.Add(1)
			s.note(fmt.Sprintf("duplicate check: %v", err))
		}
		return
	}
	s.dupChecks.Add(1)
	for n := int64(len(dups)); ; {
		old := s.dupKeys.Load()
		if n <= old || s.dupKeys.CompareAndSwap(old, n) {
			break
		}
	}
	if len(dups) > 0 {
		s.note(fmt.Sprintf("key %q stored %d times", dups[0].ItemKey, dups[0].N))
	}
}

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
