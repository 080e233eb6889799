package tests

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"github.com/safefind/safefind/tests/internal/race"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The databases. SQLite runs always, on a temporary file in WAL mode.
// PostgreSQL and MySQL/MariaDB run when their DSN is set; locally a missing
// DSN skips them with a message, in CI (CI=true) it fails the test.
const (
	postgresEnv = dbopen.PostgresEnv
	mysqlEnv    = dbopen.MySQLEnv
)

// env is one database under test.
type env struct {
	name   string // "sqlite", "postgres", "mysql"
	db     *gorm.DB
	plugin *safefind.Plugin
	// other is a second *gorm.DB on the same database without the plugin,
	// for the test's own setup and checks, and to play another process.
	other *gorm.DB
	sqlDB *sql.DB
}

// forEachDB runs fn on every configured database, each in its own subtest,
// the databases in parallel.
func forEachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := open(t, name)
			fn(t, e)
		})
	}
}

func open(t testing.TB, name string, opts ...safefind.Option) *env {
	t.Helper()
	var dsn string
	switch name {
	case "sqlite":
		// Transactions take the write lock when they begin (_txlock=immediate),
		// so concurrent transactions queue on the busy timeout instead of
		// failing with SQLITE_BUSY when they upgrade from reading to writing.
		dsn = "file:" + filepath.Join(t.TempDir(), "safefind.db") +
			"?_journal_mode=WAL&_busy_timeout=20000&_txlock=immediate&_foreign_keys=1"
	case "postgres":
		dsn = dsnOrSkip(t, postgresEnv)
	case "mysql":
		dsn = dsnOrSkip(t, mysqlEnv)
	}
	return openDSN(t, name, dsn, opts...)
}

// openDSN opens the database of kind name at dsn, as open does.
func openDSN(t testing.TB, name, dsn string, opts ...safefind.Option) *env {
	t.Helper()
	if name == "sqlite" {
		noteDatabase(name, true, "")
	}
	cfg := &gorm.Config{Logger: logger.Discard}
	if testing.Verbose() && os.Getenv("SAFEFIND_SQL_LOG") != "" {
		cfg.Logger = logger.Default.LogMode(logger.Info)
	}
	db, sqlDB, err := dbopen.Counted(name, dsn, cfg)
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(64)
	sqlDB.SetMaxIdleConns(64)
	t.Cleanup(func() { sqlDB.Close() })
	p := safefind.New(opts...)
	require.NoError(t, db.Use(p))
	require.NoError(t, db.Callback().Create().Before("gorm:begin_transaction").Register("test:inject", inject))
	require.NoError(t, db.Callback().Create().After("gorm:create").Register("test:after_insert", afterInsert))
	// The INSERTs safefind renders with GORM and sends itself (the upserts,
	// the one statement of CreateOrFind on PostgreSQL) go through Raw and
	// Row.
	require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register("test:inject", injectSent))
	require.NoError(t, db.Callback().Raw().After("gorm:raw").Register("test:after_insert", afterInsertSent))
	require.NoError(t, db.Callback().Row().Before("gorm:row").Register("test:inject", injectSent))
	require.NoError(t, db.Callback().Row().After("gorm:row").Register("test:after_insert", afterInsertSent))
	other, err := gorm.Open(db.Dialector, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	return &env{name: name, db: db, plugin: p, other: other, sqlDB: sqlDB}
}

func dsnOrSkip(t testing.TB, key string) string {
	t.Helper()
	dsn := os.Getenv(key)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run every database", key)
		}
		noteDatabase(key, false, key+" is not set")
		t.Skipf("%s is not set; set it to run against a real server (see README)", key)
	}
	noteDatabase(key, true, "")
	return dsn
}

// reset drops and recreates the tables of models.
func (e *env) reset(t testing.TB, models ...any) {
	t.Helper()
	m := e.other.Migrator()
	for i := len(models) - 1; i >= 0; i-- {
		require.NoError(t, m.DropTable(models[i]))
	}
	require.NoError(t, e.other.AutoMigrate(models...))
}

// count returns the number of rows of model matching conds.
func (e *env) count(t testing.TB, model any, conds ...any) int64 {
	t.Helper()
	var n int64
	q := e.other.Model(model)
	if len(conds) > 0 {
		q = q.Where(conds[0], conds[1:]...)
	}
	require.NoError(t, q.Count(&n).Error)
	return n
}

// recorded returns a DB whose statements are recorded, and the recorder.
func (e *env) recorded(db *gorm.DB) (*gorm.DB, *Recorder) {
	r := &Recorder{}
	return db.WithContext(withRecorder(db.Statement.Context, r)), r
}

// run runs fn on e.db, inside a transaction of its own if inTx.
func (e *env) run(inTx bool, fn func(tx *gorm.DB) error) error {
	if inTx {
		return e.db.Transaction(fn)
	}
	return fn(e.db)
}

// release runs fn in n goroutines released together, and waits for them.
func release(n int, fn func(i int)) { race.Release(n, fn) }

// Test hooks: safefind's INSERT runs through GORM's Create callbacks, where
// the tests register two of their own. A context made by withInject or
// withAfterInsert carries a function that runs once, at that point.
type (
	injectKey      struct{}
	afterInsertKey struct{}
)

// withInject: fn runs just before the first INSERT that safefind sends: a
// winner that commits between the caller's SELECT and its INSERT, placed
// there deterministically.
func withInject(ctx context.Context, fn func()) context.Context {
	return withOnce(ctx, injectKey{}, fn)
}

// withAfterInsert: fn runs just after the first INSERT that safefind sends,
// before it reads the winner's row.
func withAfterInsert(ctx context.Context, fn func()) context.Context {
	return withOnce(ctx, afterInsertKey{}, fn)
}

func withOnce(ctx context.Context, key any, fn func()) context.Context {
	var once sync.Once
	return context.WithValue(ctx, key, func() { once.Do(fn) })
}

// inject and afterInsert run around an INSERT that GORM's Create sends; a
// DryRun Create, with which safefind renders the INSERTs it sends itself,
// sends nothing and is passed over.
func inject(db *gorm.DB) {
	if !db.DryRun {
		runOnce(db, injectKey{})
	}
}

func afterInsert(db *gorm.DB) {
	if !db.DryRun {
		runOnce(db, afterInsertKey{})
	}
}

// injectSent and afterInsertSent run around an INSERT that safefind sends
// itself, through Raw or Row.
func injectSent(db *gorm.DB) {
	if sendsInsert(db) {
		runOnce(db, injectKey{})
	}
}

func afterInsertSent(db *gorm.DB) {
	if sendsInsert(db) {
		runOnce(db, afterInsertKey{})
	}
}

func sendsInsert(db *gorm.DB) bool {
	sql := strings.TrimSpace(db.Statement.SQL.String())
	return !db.DryRun && (strings.HasPrefix(sql, "INSERT") || strings.HasPrefix(sql, "WITH ins AS (INSERT"))
}

func runOnce(db *gorm.DB, key any) {
	if f, ok := db.Statement.Context.Value(key).(func()); ok {
		f()
	}
}
