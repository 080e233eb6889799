package tests

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"
)

// Read replicas behind GORM's dbresolver: a PostgreSQL hot standby and a
// MariaDB replica, both applying the primary's changes 2 s late
// (scripts/replicas starts them). A replica may serve FindOrCreate's first
// read; everything after a miss, and everything in a transaction, goes to
// the primary; CreateOrFind reads only from the primary.
//
// Where a statement went is shown twice: by the replica's own statistics
// (pg_stat_statements on the standby, Com_select on the MariaDB replica),
// and by the pool dbresolver chose for each statement.

// replicated is a primary with a lagging replica behind dbresolver.
type replicated struct {
	*env // db: the primary and the replica through dbresolver, with safefind; other: the primary alone
	// replica is the replica alone, for its statistics; replicaPool is the
	// pool dbresolver sends reads to.
	replica     *gorm.DB
	replicaPool *sql.DB
	routes      *routes
}

// forEachReplicated runs fn on each server with a replica, in parallel.
func forEachReplicated(t *testing.T, fn func(t *testing.T, r *replicated)) {
	t.Helper()
	for _, name := range []string{"postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, openReplicated(t, name))
		})
	}
}

func openReplicated(t testing.TB, name string, opts ...safefind.Option) *replicated {
	t.Helper()
	e := open(t, name, opts...)
	dsn := dsnOrSkip(t, map[string]string{"postgres": dbopen.PostgresReplicaEnv, "mysql": dbopen.MySQLReplicaEnv}[name])
	replica, pool, err := dbopen.Counted(name, dsn, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	require.NoError(t, e.db.Use(dbresolver.Register(dbresolver.Config{Replicas: []gorm.Dialector{replica.Dialector}})))
	r := &replicated{env: e, replica: replica, replicaPool: pool, routes: &routes{replica: pool}}
	r.routes.register(t, e.db)
	return r
}

// routes records, for each statement GORM sent, whether dbresolver gave it
// the replica's pool or not (the primary's, or a transaction on it).
type routes struct {
	replica *sql.DB
	mu      sync.Mutex
	onReplica,
	onPrimary []string
}

func (r *routes) register(t testing.TB, db *gorm.DB) {
	t.Helper()
	record := func(db *gorm.DB) {
		if db.DryRun || db.Statement.SQL.Len() == 0 {
			return // not sent (CreateOrFind's probe is a DryRun)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if db.Statement.ConnPool == gorm.ConnPool(r.replica) {
			r.onReplica = append(r.onReplica, db.Statement.SQL.String())
		} else {
			r.onPrimary = append(r.onPrimary, db.Statement.SQL.String())
		}
	}
	cb := db.Callback()
	require.NoError(t, cb.Query().After("gorm:query").Register("test:route", record))
	require.NoError(t, cb.Create().After("gorm:create").Register("test:route", record))
	require.NoError(t, cb.Raw().After("gorm:raw").Register("test:route", record))
	require.NoError(t, cb.Row().After("gorm:row").Register("test:route", record))
}

// take returns the statements recorded since the last take.
func (r *routes) take() (onReplica, onPrimary []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	onReplica, onPrimary = r.onReplica, r.onPrimary
	r.onReplica, r.onPrimary = nil, nil
	return onReplica, onPrimary
}

// kinds returns the first word of each statement: SELECT, INSERT, ...
func kinds(stmts []string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i], _, _ = strings.Cut(strings.TrimSpace(s), " ")
	}
	return out
}

// caughtUp waits until the replica has applied everything the primary had
// committed when it was called.
func (r *replicated) caughtUp(t testing.TB) {
	t.Helper()
	switch r.name {
	case "postgres":
		var lsn string
		require.NoError(t, r.other.Raw("SELECT pg_current_wal_lsn()::text").Scan(&lsn).Error)
		waitFor(t, "the standby to replay "+lsn, func() bool {
			var done bool
			require.NoError(t, r.replica.Raw("SELECT pg_last_wal_replay_lsn() >= ?::pg_lsn", lsn).Scan(&done).Error)
			return done
		})
	case "mysql":
		rows, err := r.other.Raw("SHOW MASTER STATUS").Rows()
		require.NoError(t, err)
		defer rows.Close()
		cols, err := rows.Columns()
		require.NoError(t, err)
		vals := make([]any, len(cols))
		for i := range vals {
			vals[i] = new(sql.NullString)
		}
		require.True(t, rows.Next(), "the primary has a binary log")
		require.NoError(t, rows.Scan(vals...))
		file, pos := vals[0].(*sql.NullString).String, vals[1].(*sql.NullString).String
		var waited sql.NullInt64
		require.NoError(t, r.replica.Raw("SELECT MASTER_POS_WAIT(?, ?, 20)", file, pos).Scan(&waited).Error)
		require.True(t, waited.Valid && waited.Int64 >= 0, "the replica reached %s:%s (MASTER_POS_WAIT = %v)", file, pos, waited)
	}
}

// reads returns how many SELECTs on the table tags the replica has served,
// by its own statistics. On MariaDB it counts every SELECT (Com_select),
// which only this test sends to the replica.
func (r *replicated) reads(t testing.TB) int64 {
	t.Helper()
	var n int64
	switch r.name {
	case "postgres":
		require.NoError(t, r.replica.Raw(`SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND query LIKE 'SELECT %FROM "tags"%'`).Scan(&n).Error)
	case "mysql":
		var name string
		require.NoError(t, r.replica.Raw("SHOW GLOBAL STATUS LIKE 'Com_select'").Row().Scan(&name, &n))
	}
	return n
}

// hasTag reports whether the replica has the tag named name yet.
func (r *replicated) hasTag(t testing.TB, name string) bool {
	t.Helper()
	var n int64
	require.NoError(t, r.replica.Model(&Tag{}).Where("name = ?", name).Count(&n).Error)
	return n > 0
}

// setUp recreates the table tags with the rows named names, and waits
// until the replica has them.
func (r *replicated) setUp(t testing.TB, names ...string) map[string]uint {
	t.Helper()
	if r.name == "postgres" {
		require.NoError(t, r.other.Exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").Error)
	}
	r.reset(t, &Tag{})
	ids := map[string]uint{}
	for _, n := range names {
		tag := Tag{Name: n, Note: "replicated"}
		require.NoError(t, r.other.Create(&tag).Error)
		ids[n] = tag.ID
	}
	r.caughtUp(t)
	r.routes.take()
	return ids
}

// onPrimaryOnly creates a tag the replica will not show for 2 s, and checks
// that it does not show it yet.
func (r *replicated) onPrimaryOnly(t testing.TB, name string) Tag {
	t.Helper()
	tag := Tag{Name: name, Note: "primary"}
	require.NoError(t, r.other.Create(&tag).Error)
	require.False(t, r.hasTag(t, name), "the replica lags")
	r.routes.take()
	return tag
}

// stillLagging fails the test if the replica caught up on name while the
// test ran: it would then not show what it claims to.
func (r *replicated) stillLagging(t testing.TB, name string) {
	t.Helper()
	require.False(t, r.hasTag(t, name), "the test took longer than the replica's lag; it proves nothing")
}

func TestReplicaRouting(t *testing.T) {
	forEachReplicated(t, func(t *testing.T, r *replicated) {
		t.Run("hits are served by the replica", func(t *testing.T) {
			ids := r.setUp(t, "a", "b", "c")
			before := r.reads(t)
			for _, n := range []string{"a", "b", "c"} {
				var tag Tag
				created, err := safefind.FindOrCreate(r.db, &tag, Tag{Name: n})
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, ids[n], tag.ID)
			}
			onReplica, onPrimary := r.routes.take()
			assert.Equal(t, []string{"SELECT", "SELECT", "SELECT"}, kinds(onReplica))
			assert.Empty(t, onPrimary)
			assert.Equal(t, before+3, r.reads(t), "the replica counted the three hits")
		})

		t.Run("a conflict's row is read on the primary", func(t *testing.T) {
			r.setUp(t)
			winner := r.onPrimaryOnly(t, "k")
			stats, before := r.plugin.Stats(), r.reads(t)
			tag := Tag{Note: "loser"}
			created, err := safefind.FindOrCreate(r.db, &tag, Tag{Name: "k"})
			require.NoError(t, err)
			assert.False(t, created)
			assert.Equal(t, winner, tag, "the winner's row, which only the primary has")
			onReplica, onPrimary := r.routes.take()
			assert.Equal(t, []string{"SELECT"}, kinds(onReplica), "the first read missed on the replica")
			assert.Equal(t, []string{"INSERT", "SELECT"}, kinds(onPrimary), "the INSERT and the read of the winner's row")
			assert.Equal(t, before+1, r.reads(t), "the replica served the first read alone")
			assert.Equal(t, stats.Conflicts+1, r.plugin.Stats().Conflicts)
			r.stillLagging(t, "k")
		})

		t.Run("a new row is created on the primary", func(t *testing.T) {
			r.setUp(t)
			var tag Tag
			created, err := safefind.FindOrCreate(r.db, &tag, Tag{Name: "new"})
			require.NoError(t, err)
			assert.True(t, created)
			onReplica, onPrimary := r.routes.take()
			assert.Equal(t, []string{"SELECT"}, kinds(onReplica))
			assert.Equal(t, []string{"INSERT"}, kinds(onPrimary))
			assert.Equal(t, int64(1), r.count(t, &Tag{}, "name = ?", "new"))
		})

		t.Run("in a transaction everything stays on the primary", func(t *testing.T) {
			r.setUp(t)
			winner := r.onPrimaryOnly(t, "k")
			before := r.reads(t)
			err := r.db.Transaction(func(tx *gorm.DB) error {
				var tag Tag
				created, err := safefind.FindOrCreate(tx, &tag, Tag{Name: "k"})
				if err != nil {
					return err
				}
				assert.False(t, created)
				assert.Equal(t, winner.ID, tag.ID, "the primary's row, read in the transaction")
				var fresh Tag
				created, err = safefind.FindOrCreate(tx, &fresh, Tag{Name: "new in tx"})
				assert.True(t, created)
				return err
			})
			require.NoError(t, err)
			onReplica, _ := r.routes.take()
			assert.Empty(t, onReplica)
			assert.Equal(t, before, r.reads(t), "the replica served nothing")
			r.stillLagging(t, "k")
		})

		t.Run("CreateOrFind reads only from the primary", func(t *testing.T) {
			r.setUp(t, "old")
			winner := r.onPrimaryOnly(t, "k")
			before := r.reads(t)
			for _, n := range []string{"old", "k", "new"} {
				var tag Tag
				created, err := safefind.CreateOrFind(r.db, &tag, Tag{Name: n})
				require.NoError(t, err)
				assert.Equal(t, n == "new", created, n)
				if n == "k" {
					assert.Equal(t, winner, tag)
				}
			}
			onReplica, _ := r.routes.take()
			assert.Empty(t, onReplica)
			assert.Equal(t, before, r.reads(t), "the replica served nothing")
			r.stillLagging(t, "k")
		})

		t.Run("batches: the first read on the replica, the rest on the primary", func(t *testing.T) {
			ids := r.setUp(t, "old")
			winner := r.onPrimaryOnly(t, "k")
			before := r.reads(t)
			rows := []Tag{{Name: "old"}, {Name: "k"}, {Name: "new"}}
			created, err := safefind.FindOrCreateAll(r.db, &rows, "name")
			require.NoError(t, err)
			assert.Equal(t, []bool{false, false, true}, created)
			assert.Equal(t, ids["old"], rows[0].ID)
			assert.Equal(t, winner, rows[1], "the winner's row, which only the primary has")
			onReplica, onPrimary := r.routes.take()
			assert.Equal(t, []string{"SELECT"}, kinds(onReplica), "the first read")
			assert.NotEmpty(t, onPrimary)
			assert.Equal(t, before+1, r.reads(t))

			rows = []Tag{{Name: "k"}, {Name: "new 2"}}
			created, err = safefind.CreateOrFindAll(r.db, &rows, "name")
			require.NoError(t, err)
			assert.Equal(t, []bool{false, true}, created)
			assert.Equal(t, winner, rows[0])
			onReplica, _ = r.routes.take()
			assert.Empty(t, onReplica, "CreateOrFindAll reads only from the primary")
			assert.Equal(t, before+1, r.reads(t))
			r.stillLagging(t, "k")
		})

		t.Run("the unique-index guard reads the primary's catalog", func(t *testing.T) {
			// A table of a name never used before, whose unique index only
			// the catalog declares, created a moment ago: the replica has
			// neither yet.
			type Fresh struct {
				ID   uint
				Code string
			}
			table := fmt.Sprintf("fresh_%d", time.Now().UnixNano())
			require.NoError(t, r.other.Exec(map[string]string{
				"postgres": `CREATE TABLE ` + table + ` (id BIGSERIAL PRIMARY KEY, code TEXT NOT NULL UNIQUE)`,
				"mysql":    `CREATE TABLE ` + table + ` (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(64) NOT NULL UNIQUE)`,
			}[r.name]).Error)
			t.Cleanup(func() { r.other.Migrator().DropTable(table) })
			r.routes.take()
			var row Fresh
			created, err := safefind.CreateOrFind(r.db.Table(table), &row, Fresh{Code: "x"})
			require.NoError(t, err, "the guard found the unique index on the primary")
			assert.True(t, created)
			onReplica, _ := r.routes.take()
			assert.Empty(t, onReplica)
			assert.False(t, r.replica.Migrator().HasTable(table), "the replica lags")
		})
	})
}

func TestReplicaPrimaryReads(t *testing.T) {
	for _, name := range []string{"postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := openReplicated(t, name, safefind.WithPrimaryReads())
			ids := r.setUp(t, "a")
			winner := r.onPrimaryOnly(t, "k")
			before := r.reads(t)
			for _, n := range []string{"a", "k"} {
				var tag Tag
				created, err := safefind.FindOrCreate(r.db, &tag, Tag{Name: n})
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, map[string]uint{"a": ids["a"], "k": winner.ID}[n], tag.ID)
			}
			rows := []Tag{{Name: "k"}}
			_, err := safefind.FindOrCreateAll(r.db, &rows, "name")
			require.NoError(t, err)
			assert.Equal(t, winner, rows[0])
			onReplica, onPrimary := r.routes.take()
			assert.Empty(t, onReplica)
			assert.Equal(t, []string{"SELECT", "SELECT", "SELECT"}, kinds(onPrimary), "hits on the primary, no conflict")
			assert.Equal(t, before, r.reads(t), "the replica served nothing")
			r.stillLagging(t, "k")
		})
	}
}

// Concurrent callers on new keys, with a replica 2 s behind: each caller's
// first read misses on the replica, whoever wins, so every caller inserts
// and all but one per key lose the race. Zero errors, one row per key, and
// every caller holds that row. The control, GORM's FirstOrCreate behind the
// same dbresolver, fails on duplicate keys.
func TestReplicaConcurrentNewKeys(t *testing.T) {
	const keys, perKey = 4, 8
	forEachReplicated(t, func(t *testing.T, r *replicated) {
		type caller struct {
			name string
			call func(db *gorm.DB, tag *Tag, key string) (bool, error)
			// firstReads is how many reads per call the replica may serve.
			firstReads int
		}
		bare := func(fn func(*gorm.DB, any, ...any) (bool, error)) func(*gorm.DB, *Tag, string) (bool, error) {
			return func(db *gorm.DB, tag *Tag, key string) (bool, error) { return fn(db, tag, Tag{Name: key}) }
		}
		callers := []caller{
			{"FindOrCreate", bare(safefind.FindOrCreate), 1},
			{"CreateOrFind", bare(safefind.CreateOrFind), 0},
			{"FindOrCreate in RetryTransaction", func(db *gorm.DB, tag *Tag, key string) (created bool, err error) {
				err = safefind.RetryTransaction(db, func(tx *gorm.DB) error {
					*tag = Tag{}
					created, err = safefind.FindOrCreate(tx, tag, Tag{Name: key})
					return err
				})
				return created, err
			}, 0},
		}
		for _, c := range callers {
			t.Run(c.name, func(t *testing.T) {
				r.setUp(t)
				stats := r.plugin.Stats()
				var (
					mu      sync.Mutex
					ids     = map[string]map[uint]int{}
					created = map[string]int{}
					errs    []error
				)
				release(keys*perKey, func(i int) {
					key := fmt.Sprintf("key %d", i%keys)
					var tag Tag
					isNew, err := c.call(r.db, &tag, key)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					if tag.Name != key {
						errs = append(errs, fmt.Errorf("asked for %q, got %+v", key, tag))
					}
					if ids[key] == nil {
						ids[key] = map[uint]int{}
					}
					ids[key][tag.ID]++
					if isNew {
						created[key]++
					}
				})
				require.Empty(t, errs)
				r.stillLagging(t, "key 0")
				var rows []Tag
				require.NoError(t, r.other.Order("name").Find(&rows).Error)
				require.Len(t, rows, keys, "one row per key on the primary")
				for _, row := range rows {
					assert.Equal(t, map[uint]int{row.ID: perKey}, ids[row.Name], "every caller of %q holds its row", row.Name)
					assert.Equal(t, 1, created[row.Name], "one caller of %q created it", row.Name)
				}
				onReplica, _ := r.routes.take()
				assert.Len(t, onReplica, keys*perKey*c.firstReads, "only first reads went to the replica")
				if c.firstReads > 0 {
					assert.Equal(t, int64(keys*(perKey-1)), r.plugin.Stats().Conflicts-stats.Conflicts,
						"every first read missed on the lagging replica; all but one caller per key lost the race")
				}
				r.caughtUp(t)
				var n int64
				require.NoError(t, r.replica.Model(&Tag{}).Count(&n).Error)
				assert.Equal(t, int64(keys), n, "one row per key on the replica too")
			})
		}

		t.Run("control: FirstOrCreate", func(t *testing.T) {
			r.setUp(t)
			var duplicates, others atomic.Int64
			release(keys*perKey, func(i int) {
				var tag Tag
				err := r.db.FirstOrCreate(&tag, Tag{Name: fmt.Sprintf("key %d", i%keys)}).Error
				switch {
				case isDuplicateKey(err):
					duplicates.Add(1)
				case err != nil:
					others.Add(1)
				}
			})
			assert.Positive(t, duplicates.Load(), "FirstOrCreate behind a lagging replica fails on duplicate keys")
			assert.Zero(t, others.Load())
		})
	})
}

// dbresolver can send a chain to a named set of databases
// (dbresolver.Use). The statements safefind builds anew, the INSERT and the
// guard's catalog read, go there too. Two SQLite files stand in for two
// databases; only the named one has a unique index on code.
func TestResolverUse(t *testing.T) {
	dir := t.TempDir()
	openFile := func(name string) *gorm.DB {
		db, err := gorm.Open(sqlite.Open(filepath.Join(dir, name)), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		return db
	}
	main, named := openFile("main.db"), openFile("named.db")
	require.NoError(t, main.Exec(`CREATE TABLE codes (id INTEGER PRIMARY KEY, code TEXT)`).Error)
	require.NoError(t, named.Exec(`CREATE TABLE codes (id INTEGER PRIMARY KEY, code TEXT UNIQUE)`).Error)
	// A global resolver (main's own pool) and a named one.
	require.NoError(t, main.Use(dbresolver.Register(dbresolver.Config{}).
		Register(dbresolver.Config{Sources: []gorm.Dialector{named.Dialector}}, "named")))
	require.NoError(t, main.Use(safefind.New()))
	type Code struct {
		ID   uint
		Code string
	}
	on := main.Clauses(dbresolver.Use("named"))
	for _, o := range ops {
		var row Code
		created, err := o.fn(on, &row, map[string]any{"code": o.name})
		require.NoError(t, err, "the guard read the named database's catalog")
		assert.True(t, created)
	}
	rows := []Code{{Code: "FindOrCreate"}, {Code: "batch"}}
	created, err := safefind.FindOrCreateAll(on, &rows, "code")
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true}, created)
	var inNamed, inMain int64
	require.NoError(t, named.Table("codes").Count(&inNamed).Error)
	require.NoError(t, main.Session(&gorm.Session{NewDB: true}).Table("codes").Count(&inMain).Error)
	assert.Equal(t, int64(3), inNamed, "every row went to the named database")
	assert.Zero(t, inMain)
}

// isDuplicateKey reports whether err is PostgreSQL's or MySQL's
// duplicate-key error.
func isDuplicateKey(err error) bool {
	var pe *pgconn.PgError
	var me *mysql.MySQLError
	return errors.As(err, &pe) && pe.Code == "23505" || errors.As(err, &me) && me.Number == 1062
}
