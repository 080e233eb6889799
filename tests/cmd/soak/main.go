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
// gave up) and deadlocks by call, errors that are not retryable, wrong
// rows, duplicate-key errors returned to callers, keys stored twice
// (checked every -check and at the end), the row count against the created
// flags, heap in use after the warm-up and at the end, and the plugin's
// counters.
//
// The calls of a transaction take their keys in key order (call i from the
// i-th slice of the key space), as an application that wants no deadlock
// would; -unordered makes a fraction of them take keys anywhere, and then
// PostgreSQL's deadlock detector, which waits deadlock_timeout (1s) before
// it breaks a cycle, slows the whole run down. With every transaction in key
// order, the PostgreSQL report counts deadlocks (40P01) in transactions all
// the same: a batch that finds a key it skipped deleted before its read
// inserts that key again, after the keys above it. They are retried, and
// not a failure.
//
// The exit status is 1 if any of these is not 0: errors that are not
// retryable, wrong rows, duplicate-key errors, keys stored twice, bare batch
// calls (FindOrCreateAll, CreateOrFindAll, UpsertAll) that failed with a
// deadlock (40P01, 1213: they lock their keys in key order), rows stored
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

// kind is one of the four calls.
type kind int

const (
	findOrCreate kind = iota
	createOrFind
	findOrCreateAll
	createOrFindAll
	nKinds
)

var kindNames = [nKinds]string{"FindOrCreate", "CreateOrFind", "FindOrCreateAll", "CreateOrFindAll"}

// call is one planned call, run once bare or once per transaction attempt.
type call struct {
	kind  kind
	keys  []string // one for the single-row calls
	where bool     // single-row: the key in a Where chain, not a struct condition
	ptrs  bool     // batch: []*Item rather than []Item
}

func (c call) String() string {
	if len(c.keys) == 1 {
		return fmt.Sprintf("%s(%s)", kindNames[c.kind], c.keys[0])
	}
	return fmt.Sprintf("%s(%d keys: %s…)", kindNames[c.kind], len(c.keys), c.keys[0])
}

type config struct {
	db, dsn                string
	duration, grace, every time.Duration
	warmup                 time.Duration
	goroutines, keys       int
	batch, txCalls         int
	attempts, deletes      int
	unordered              float64
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
	flag.IntVar(&cfg.attempts, "attempts", 5, "RetryAttempts of each transaction")
	flag.IntVar(&cfg.deletes, "deletes", 200, "deletes per second the deleter aims at, one statement at a time (0: no deleter)")
	flag.BoolVar(&cfg.translate, "translate-error", false, "open GORM with TranslateError")
	flag.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	if cfg.goroutines < 1 || cfg.batch < 1 || cfg.txCalls < 1 || cfg.keys < cfg.txCalls || cfg.duration <= 0 || cfg.deletes < 0 {
		fmt.Fprintln(os.Stderr, "soak: -goroutines, -batch, -txcalls and -duration must be positive, -keys at least -txcalls, -deletes not negative")
		return 2
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
	s := &soak{cfg: cfg, db: db, plugin: safefind.New(), isolated: cfg.db != "sqlite"}
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
	fmt.Printf("safefind soak: %s, %d goroutines, %d keys, batches of up to %d, up to %d calls per transaction, deleter aiming at %d/s, %s (warm-up %s, grace %s), seed %d\n",
		cfg.db, cfg.goroutines, cfg.keys, cfg.batch, cfg.txCalls, cfg.deletes, cfg.duration, cfg.warmup, cfg.grace, cfg.seed)
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
	if !hung {
		s.checkDuplicates(context.Background())
	}
	heapEnd := heapInuse()
	return s.report(elapsed, hung, heapStart, heapEnd, goroutinesStart)
}

// worker runs calls until the deadline: 4 in 10 bare, the others inside
// RetryTransaction.
func (s *soak) worker(ctx context.Context, w int, deadline time.Time) {
	r := rand.New(rand.NewPCG(s.cfg.seed, uint64(w)))
	payload := fmt.Sprintf("worker %d", w)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.IntN(10) < 4 {
			c := s.plan(r, s.keys)
			s.bare.Add(1)
			if err := s.do(s.db.WithContext(ctx), c, payload); err != nil {
				if safefind.IsRetryable(err) {
					s.retryCause(err, true)
				}
				s.classify("bare "+c.String(), err)
			}
			continue
		}
		s.transaction(ctx, r, payload)
	}
}

// plan picks a call and its keys among keys: single keys uniformly;
// batches either a sorted run of consecutive keys or random keys in random
// order, duplicates included.
func (s *soak) plan(r *rand.Rand, keys []string) call {
	c := call{kind: kind(r.IntN(int(nKinds))), where: r.IntN(2) == 0, ptrs: r.IntN(2) == 0}
	if c.kind == findOrCreate || c.kind == createOrFind {
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
	runs := 0
	err := safefind.RetryTransaction(s.db.WithContext(ctx), func(tx *gorm.DB) error {
		runs++
		for _, c := range plan {
			if err := s.do(tx, c, payload); err != nil {
				if safefind.IsRetryable(err) {
					s.retryCause(err, ordered)
				}
				return err
			}
		}
		return nil
	}, opts...)
	s.runs.Add(int64(runs))
	if runs > 1 {
		s.retries.Add(int64(runs - 1))
	}
	if err == nil {
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
	s.classify(where, err)
}

// do runs one call on tx and checks its result.
func (s *soak) do(tx *gorm.DB, c call, payload string) error {
	s.calls[c.kind].Add(1)
	switch c.kind {
	case findOrCreate, createOrFind:
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
			return err
		}
		if item.ItemKey != k || item.ID == 0 {
			s.wrong(fmt.Sprintf("%s returned id %d key %q", c, item.ID, item.ItemKey))
		}
		if created {
			s.created.Add(1)
		}
		return nil
	default:
		fn := safefind.FindOrCreateAll
		if c.kind == createOrFindAll {
			fn = safefind.CreateOrFindAll
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
			if created, err = fn(tx, &rows, "item_key"); err != nil {
				return err
			}
			for i, row := range rows {
				got[i] = *row
			}
		} else {
			rows := make([]Item, len(c.keys))
			for i, k := range c.keys {
				rows[i] = Item{ItemKey: k, Payload: payload}
			}
			if created, err = fn(tx, &rows, "item_key"); err != nil {
				return err
			}
			copy(got, rows)
		}
		s.checkBatch(c, got, created)
		return nil
	}
}

// checkBatch checks a batch's rows: each has its key and an id, elements of
// one key share one row, and only the first of them can be created.
func (s *soak) checkBatch(c call, got []Item, created []bool) {
	if len(created) != len(got) {
		s.wrong(fmt.Sprintf("%s returned %d created flags for %d rows", c, len(created), len(got)))
		return
	}
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
			s.created.Add(1)
		}
	}
}

// classify counts an error that reached the caller: a retryable one (the
// retries ran out, or a bare call), the context's end, a duplicate-key
// error, or any other error. ErrConflictNotFound wraps the duplicate-key
// error, and is counted as not retryable.
func (s *soak) classify(where string, err error) {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		s.cancelled.Add(1)
		s.note(fmt.Sprintf("%s: cut off at the end of the grace period: %v", where, err))
	case safefind.IsRetryable(err):
		s.escaped.Add(1)
		s.mu.Lock()
		if s.firstEscaped == "" {
			s.firstEscaped = fmt.Sprintf("%s: %v", where, err)
		}
		s.mu.Unlock()
	case errors.Is(err, safefind.ErrConflictNotFound):
		s.conflictNF.Add(1)
		s.nonRetryable.Add(1)
		s.note(fmt.Sprintf("%s: %v", where, err))
	case s.isDuplicate(err):
		s.dupErrors.Add(1)
		s.note(fmt.Sprintf("%s: duplicate-key error: %v", where, err))
	default:
		s.nonRetryable.Add(1)
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

// retryCause counts a retryable error a call returned, by its code, and
// the deadlocks in ordered work (a bare call, or an ordered transaction).
func (s *soak) retryCause(err error, ordered bool) {
	var (
		pe    *pgconn.PgError
		me    *mysql.MySQLError
		se    sqlite3.Error
		cause = "other"
	)
	switch {
	case errors.Is(err, safefind.ErrStaleSnapshot):
		cause = "ErrStaleSnapshot"
	case errors.As(err, &pe):
		cause = "postgres " + pe.Code
		if pe.Code == "40P01" && ordered {
			s.orderedDeadlocks.Add(1)
		}
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
	must("non-retryable errors", s.nonRetryable.Load())
	if n := s.conflictNF.Load(); n > 0 {
		fmt.Printf("%-28s %10d  of them ErrConflictNotFound\n", "", n)
	}
	must("wrong rows", s.wrongRows.Load())
	must("duplicate-key errors", s.dupErrors.Load())
	must(fmt.Sprintf("keys stored twice (%d chk)", s.dupChecks.Load()), s.dupKeys.Load())
	if s.cfg.db == "postgres" && s.cfg.unordered == 0 {
		// Informational: a batch inside a transaction re-inserts a key whose
		// row was deleted between its INSERT and its read after the keys
		// above it, out of order, and can then deadlock (40P01, retried).
		fmt.Printf("%-28s %10d  (40P01 with every transaction in key order)\n", "deadlocks in ordered work", s.orderedDeadlocks.Load())
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
