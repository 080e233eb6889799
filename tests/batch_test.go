package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

type batchOp struct {
	name string
	fn   func(tx *gorm.DB, rows any, keys ...string) ([]bool, error)
}

var batchOps = []batchOp{
	{"FindOrCreateAll", safefind.FindOrCreateAll},
	{"CreateOrFindAll", safefind.CreateOrFindAll},
}

func TestBatch(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range batchOps {
			for _, inTx := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/tx=%v", o.name, inTx), func(t *testing.T) {
					e.reset(t, &Tag{})
					existing := []Tag{{Name: "b", Note: "stored"}, {Name: "d", Note: "stored"}}
					require.NoError(t, e.other.Create(&existing).Error)
					before := e.plugin.Stats()

					rows := []Tag{
						{Name: "c", Note: "new"},
						{Name: "b", Note: "ignored"},
						{Name: "a", Note: "new"},
						{Name: "c", Note: "duplicate"},
						{Name: "d"},
					}
					r := &Recorder{}
					var created []bool
					call := func(tx *gorm.DB) error {
						var err error
						created, err = o.fn(tx.WithContext(withRecorder(context.Background(), r)), &rows, "Name")
						return err
					}
					if inTx {
						require.NoError(t, e.db.Transaction(call))
					} else {
						require.NoError(t, call(e.db))
					}
					assert.Equal(t, []bool{true, false, true, false, false}, created)
					assert.Equal(t, []string{"c", "b", "a", "c", "d"}, names(rows), "the caller's order")
					assert.Equal(t, existing[0], rows[1], "an existing row is returned as stored")
					assert.Equal(t, existing[1], rows[4])
					assert.Equal(t, "new", rows[0].Note)
					assert.Equal(t, rows[0], rows[3], "duplicates receive the same row")
					for _, row := range rows {
						var stored Tag
						require.NoError(t, e.other.First(&stored, row.ID).Error)
						assert.Equal(t, stored, row)
					}
					assert.EqualValues(t, 4, e.count(t, &Tag{}))
					assert.Zero(t, r.Savepoints(), "%q", r.Statements())
					after := e.plugin.Stats()
					assert.EqualValues(t, 2, after.Created-before.Created)
					assert.EqualValues(t, 2, after.Found-before.Found)

					// Inserted in key order.
					for _, s := range r.Statements() {
						if strings.HasPrefix(s, "INSERT") {
							assert.Less(t, strings.Index(s, `"a"`)+strings.Index(s, "'a'"), strings.Index(s, `"c"`)+strings.Index(s, "'c'")+1, s)
						}
					}
				})
			}
		}
	})
}

func names(tags []Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Name
	}
	return out
}

func TestBatchCompositeKeyAndPointers(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range batchOps {
			e.reset(t, &Member{})
			require.NoError(t, e.other.Create(&Member{OrgID: 1, Email: "a@x", Handle: "a1"}).Error)
			rows := []*Member{
				{OrgID: 2, Email: "a@x", Handle: "a2"},
				{OrgID: 1, Email: "a@x", Handle: "ignored"},
				{OrgID: 1, Email: "b@x", Handle: "b1"},
			}
			// Keys by column name and by field name.
			created, err := o.fn(e.db, &rows, "org_id", "Email")
			require.NoError(t, err, o.name)
			assert.Equal(t, []bool{true, false, true}, created, o.name)
			assert.Equal(t, "a1", rows[1].Handle, o.name)
			assert.NotZero(t, rows[0].ID)
			assert.EqualValues(t, 3, e.count(t, &Member{}))
		}
	})
}

// The chain's equalities are set on every row created; its conditions apply
// to the reads.
func TestBatchChainConditions(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range batchOps {
			e.reset(t, &Member{})
			require.NoError(t, e.other.Create(&Member{OrgID: 5, Email: "old@x", Handle: "old"}).Error)
			rows := []Member{{Email: "old@x", Handle: "x"}, {Email: "new@x", Handle: "new"}}
			created, err := o.fn(e.db.Where("org_id = ?", 5), &rows, "email")
			require.NoError(t, err, o.name)
			assert.Equal(t, []bool{false, true}, created)
			assert.EqualValues(t, 5, rows[1].OrgID, "the chain's equality is set on the row created")
			assert.Equal(t, "old", rows[0].Handle)
		}
		_, err := safefind.CreateOrFindAll(e.db.Where("age > ?", 1), &[]Member{{Email: "x"}}, "email")
		require.ErrorIs(t, err, safefind.ErrUnsupportedCondition)
	})
}

// Statements per chunk, counted at the driver, and chunking.
func TestBatchStatements(t *testing.T) {
	const keys = 1000
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range batchOps {
			for _, existing := range []int{0, 50, 100} {
				t.Run(fmt.Sprintf("%s/%d%%", o.name, existing), func(t *testing.T) {
					e.reset(t, &Tag{})
					var seed []Tag
					for i := range keys * existing / 100 {
						seed = append(seed, Tag{Name: fmt.Sprintf("k%05d", i*100/max(existing, 1))})
					}
					if len(seed) > 0 {
						require.NoError(t, e.other.CreateInBatches(&seed, 500).Error)
					}
					rows := make([]Tag, keys)
					for i := range rows {
						rows[i].Name = fmt.Sprintf("k%05d", i)
					}
					db, r := e.recorded(e.db)
					created, err := o.fn(db, &rows, "name")
					require.NoError(t, err)
					n := 0
					for _, c := range created {
						if c {
							n++
						}
					}
					assert.Equal(t, keys-len(seed), n)
					assert.EqualValues(t, keys, e.count(t, &Tag{}))
					stmts := r.Statements()
					limit := 3
					if o.name == "CreateOrFindAll" && (e.name != "mysql" || existing == 0) {
						limit = 2
					}
					if o.name == "CreateOrFindAll" && e.name == "mysql" && existing > 0 {
						limit = 4 // INSERT (conflict), then SELECT, INSERT, SELECT
					}
					assert.LessOrEqual(t, len(stmts), limit, "one chunk: %q", abbreviate(stmts))
					assert.Zero(t, r.Savepoints())
				})
			}
		}
		t.Run("chunks", func(t *testing.T) {
			e.reset(t, &Tag{})
			db, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: e.db.Logger})
			require.NoError(t, err)
			require.NoError(t, db.Use(safefind.New(safefind.WithChunkSize(100))))
			rows := make([]Tag, 1000)
			for i := range rows {
				rows[i].Name = fmt.Sprintf("c%04d", 999-i)
			}
			ctxdb, r := e.recorded(db)
			_, err = safefind.FindOrCreateAll(ctxdb, &rows, "name")
			require.NoError(t, err)
			inserts := 0
			for _, s := range r.Statements() {
				if strings.HasPrefix(s, "INSERT") {
					inserts++
				}
			}
			assert.Equal(t, 10, inserts)
			assert.EqualValues(t, 1000, e.count(t, &Tag{}))
		})
	})
}

func abbreviate(stmts []string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		if len(s) > 60 {
			s = s[:60] + "…"
		}
		out[i] = s
	}
	return out
}

// 100,000 keys in one call: chunked by the configured size and the
// database's bind-parameter limit.
func TestBatchHundredThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const keys = 100_000
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		seed := make([]Tag, 0, keys/2)
		for i := 0; i < keys; i += 2 {
			seed = append(seed, Tag{Name: fmt.Sprintf("h%06d", i)})
		}
		require.NoError(t, e.other.CreateInBatches(&seed, 2000).Error)
		rows := make([]Tag, keys)
		for i := range rows {
			rows[i].Name = fmt.Sprintf("h%06d", keys-1-i)
		}
		created, err := safefind.FindOrCreateAll(e.db, &rows, "name")
		require.NoError(t, err)
		n := 0
		for i, c := range created {
			if c {
				n++
			}
			require.Equal(t, fmt.Sprintf("h%06d", keys-1-i), rows[i].Name)
			require.NotZero(t, rows[i].ID)
		}
		assert.Equal(t, keys/2, n)
		assert.EqualValues(t, keys, e.count(t, &Tag{}))
	})
}

func TestBatchBadInput(t *testing.T) {
	type NoUnique struct {
		ID   uint
		Name string `gorm:"size:32"`
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{}, &NoUnique{})
		var nilSlice *[]Tag
		cases := []struct {
			name string
			rows any
			keys []string
			want error
		}{
			{"nil", nil, []string{"name"}, safefind.ErrInvalidDest},
			{"nil slice pointer", nilSlice, []string{"name"}, safefind.ErrInvalidDest},
			{"not a pointer", []Tag{{Name: "a"}}, []string{"name"}, safefind.ErrInvalidDest},
			{"pointer to a struct", &Tag{Name: "a"}, []string{"name"}, safefind.ErrInvalidDest},
			{"not structs", &[]string{"a"}, []string{"name"}, safefind.ErrInvalidDest},
			{"nil element", &[]*Tag{nil}, []string{"name"}, safefind.ErrInvalidDest},
			{"no key columns", &[]Tag{{Name: "a"}}, nil, safefind.ErrNoConditions},
			{"unknown key column", &[]Tag{{Name: "a"}}, []string{"nosuch"}, safefind.ErrUnknownColumn},
			{"key not unique", &[]Tag{{Name: "a"}}, []string{"note"}, safefind.ErrKeyNotUnique},
			{"no unique index anywhere", &[]NoUnique{{Name: "a"}}, []string{"name"}, safefind.ErrKeyNotUnique},
		}
		for _, o := range batchOps {
			for _, c := range cases {
				t.Run(o.name+"/"+c.name, func(t *testing.T) {
					db, r := e.recorded(e.db)
					var created []bool
					var err error
					require.NotPanics(t, func() { created, err = o.fn(db, c.rows, c.keys...) })
					require.ErrorIs(t, err, c.want)
					assert.Nil(t, created)
					for _, s := range r.Statements() {
						assert.False(t, strings.HasPrefix(s, "INSERT"), "writes nothing: %q", s)
					}
				})
			}
			t.Run(o.name+"/empty slice", func(t *testing.T) {
				db, r := e.recorded(e.db)
				created, err := o.fn(db, &[]Tag{}, "name")
				require.NoError(t, err)
				assert.Empty(t, created)
				assert.Empty(t, r.Statements(), "no statement at all")
			})
			t.Run(o.name+"/not registered", func(t *testing.T) {
				_, err := o.fn(e.other, &[]Tag{{Name: "a"}}, "name")
				require.ErrorIs(t, err, safefind.ErrNotRegistered)
			})
		}
		assert.EqualValues(t, 0, e.count(t, &Tag{}))
		assert.EqualValues(t, 0, e.count(t, &NoUnique{}))

		// A unique index that only the database knows about counts.
		require.NoError(t, e.other.Exec("CREATE UNIQUE INDEX idx_no_uniques_name ON no_uniques (name)").Error)
		p := safefind.New()
		db, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: e.db.Logger})
		require.NoError(t, err)
		require.NoError(t, db.Use(p))
		created, err := safefind.FindOrCreateAll(db, &[]NoUnique{{Name: "a"}}, "name")
		require.NoError(t, err)
		assert.Equal(t, []bool{true}, created)
	})
}

func TestBatchHooks(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Account{})
		require.NoError(t, e.other.Create(&Account{Email: "old@x"}).Error)
		for _, o := range batchOps {
			var hooks atomic.Int64
			db := e.db.WithContext(context.WithValue(context.Background(), hookKey{}, &hooks))
			rows := []Account{{Email: "old@x"}, {Email: o.name + "@x"}}
			created, err := o.fn(db, &rows, "email")
			require.NoError(t, err)
			assert.Equal(t, []bool{false, true}, created)
			assert.EqualValues(t, 1, hooks.Load(), "%s: AfterCreate for the created row only", o.name)
		}
	})
}

// A REPEATABLE READ snapshot taken before another transaction committed some
// of the keys: MySQL/MariaDB returns the winner's rows; PostgreSQL gives a
// retryable error, and the retry succeeds.
func TestBatchRepeatableRead(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite transactions hold the write lock from BEGIN")
		}
		for _, o := range batchOps {
			e.reset(t, &Tag{})
			rr := &sql.TxOptions{Isolation: sql.LevelRepeatableRead}
			rows := []Tag{{Name: "new"}, {Name: "raced"}}
			run := func(tx *gorm.DB) error {
				_, err := o.fn(tx, &rows, "name")
				return err
			}
			err := e.db.Transaction(func(tx *gorm.DB) error {
				require.NoError(t, tx.Find(&[]Tag{}).Error) // the snapshot
				require.NoError(t, e.other.Create(&Tag{Name: "raced", Note: "winner"}).Error)
				return run(tx)
			}, rr)
			if e.name == "postgres" {
				require.Error(t, err)
				assert.True(t, safefind.IsRetryable(err), "%s: %v", o.name, err)
				require.NoError(t, e.db.Transaction(run, rr))
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, "winner", rows[1].Note, o.name)
			assert.EqualValues(t, 2, e.count(t, &Tag{}))
		}
	})
}

// The caller's locking clause is used by the reads.
func TestBatchLockingClause(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite has no row locks; GORM drops the clause")
		}
		e.reset(t, &Tag{})
		require.NoError(t, e.other.Create(&Tag{Name: "a"}).Error)
		r := &Recorder{}
		err := e.db.WithContext(withRecorder(context.Background(), r)).Transaction(func(tx *gorm.DB) error {
			_, err := safefind.FindOrCreateAll(tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}), &[]Tag{{Name: "a"}}, "name")
			return err
		})
		require.NoError(t, err)
		reads := selects(r.Statements())
		require.Len(t, reads, 1)
		assert.True(t, strings.HasSuffix(reads[0], "FOR UPDATE"), reads[0])
	})
}

// On MySQL/MariaDB's default case-insensitive collation "Go" finds "go":
// keys the batch cannot match by value are settled one by one, by the
// database's own comparison.
func TestBatchCollation(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name != "mysql" {
			t.Skip("case-insensitive collation is MySQL/MariaDB's default")
		}
		for _, o := range batchOps {
			e.reset(t, &Tag{})
			stored := Tag{Name: "go"}
			require.NoError(t, e.other.Create(&stored).Error)
			rows := []Tag{{Name: "Go"}, {Name: "rust"}}
			created, err := o.fn(e.db, &rows, "name")
			require.NoError(t, err, o.name)
			assert.Equal(t, []bool{false, true}, created)
			assert.Equal(t, stored, rows[0])
		}
	})
}

// Transactions that find-or-create overlapping key sets, passed in opposite
// orders, released together, many rounds: no deadlock, no error, one row per
// key. The control runs the same schedule with unsorted multi-row INSERTs
// and must deadlock, which shows the schedule does provoke it.
func TestBatchNoDeadlock(t *testing.T) {
	const (
		rounds = 20
		keys   = 200
	)
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite has one writer at a time: no row locks to deadlock on")
		}
		schedule := func(round, worker int) []Tag {
			rows := make([]Tag, keys)
			for i := range rows {
				// Overlapping ranges; odd workers go backwards.
				k := i + worker*keys/3
				if worker%2 == 1 {
					k = worker*keys/3 + keys - 1 - i
				}
				rows[i].Name = fmt.Sprintf("r%03d-k%04d", round, k)
			}
			return rows
		}
		type outcome struct {
			deadlocks, errs int64
			first           error
		}
		run := func(t *testing.T, workers, rounds int, inTx bool, insert func(tx *gorm.DB, rows []Tag) error) outcome {
			e.reset(t, &Tag{})
			var errs, dl atomic.Int64
			var first atomic.Value
			for round := range rounds {
				release(workers, func(w int) {
					rows := schedule(round, w)
					var err error
					if inTx {
						err = e.db.Transaction(func(tx *gorm.DB) error {
							if err := fastDeadlocks(e, tx); err != nil {
								return err
							}
							return insert(tx, rows)
						})
					} else {
						err = insert(e.db, rows)
					}
					switch {
					case err == nil:
					case isDeadlock(err):
						dl.Add(1)
					default:
						errs.Add(1)
						first.CompareAndSwap(nil, err)
					}
				})
				if rounds > 20 && dl.Load() > 0 {
					break // the control has shown what it had to
				}
			}
			o := outcome{deadlocks: dl.Load(), errs: errs.Load()}
			if v := first.Load(); v != nil {
				o.first = v.(error)
			}
			return o
		}
		check := func(t *testing.T, workers int, o outcome) {
			assert.Zero(t, o.deadlocks, "deadlocks")
			assert.Zero(t, o.errs, "errors: %v", o.first)
			var dup int64
			require.NoError(t, e.other.Raw("SELECT COUNT(*) FROM (SELECT name FROM tags GROUP BY name HAVING COUNT(*) > 1) d").Scan(&dup).Error)
			assert.Zero(t, dup, "one row per key")
			assert.EqualValues(t, rounds*(keys+(workers-1)*keys/3), e.count(t, &Tag{}))
		}
		// Four overlapping batches in transactions: on MariaDB too, whose
		// batches insert through the marked upsert, which fails nothing.
		txWorkers := 4
		for _, o := range batchOps {
			t.Run(o.name+"/transactions", func(t *testing.T) {
				check(t, txWorkers, run(t, txWorkers, rounds, true, func(tx *gorm.DB, rows []Tag) error {
					_, err := o.fn(tx, &rows, "name")
					return err
				}))
			})
			t.Run(o.name+"/no transaction", func(t *testing.T) {
				check(t, 4, run(t, 4, rounds, false, func(tx *gorm.DB, rows []Tag) error {
					_, err := o.fn(tx, &rows, "name")
					return err
				}))
			})
		}
		t.Run("control: unsorted multi-row INSERT", func(t *testing.T) {
			o := run(t, txWorkers, 100, true, func(tx *gorm.DB, rows []Tag) error {
				if e.name == "postgres" {
					return tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&rows).Error
				}
				return tx.Create(&rows).Error // MySQL: a duplicate fails the statement, a deadlock the transaction
			})
			assert.Positive(t, o.deadlocks, "the schedule provokes deadlocks when rows are not sorted")
			t.Logf("control: %d deadlocks, %d other errors (%v)", o.deadlocks, o.errs, o.first)
		})
	})
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40P01"
	}
	var myErr *gomysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number == 1213
	}
	return false
}

// The SQL of a batch, per dialect, rendered with DryRun: the read of the
// keys, the INSERT in key order, the read of the rows that lost a race.
func TestBatchGoldenSQL(t *testing.T) {
	golden := map[string][]string{
		"sqlite": {
			"SELECT * FROM `tags` WHERE `tags`.`name` IN (\"a\",\"b\")",
			"INSERT INTO `tags` (`name`,`note`) VALUES (\"a\",\"\"),(\"b\",\"\") ON CONFLICT DO NOTHING RETURNING *",
			"SELECT * FROM `tags` WHERE `tags`.`name` IN (\"a\",\"b\")",
		},
		"postgres": {
			`SELECT * FROM "tags" WHERE "tags"."name" IN ('a','b')`,
			`INSERT INTO "tags" ("name","note") VALUES ('a',''),('b','') ON CONFLICT DO NOTHING RETURNING *`,
			`SELECT * FROM "tags" WHERE "tags"."name" IN ('a','b')`,
		},
		// MariaDB; MySQL has neither RETURNING nor LOCK IN SHARE MODE in GORM's rendering.
		"mysql": {
			"SELECT * FROM `tags` WHERE `tags`.`name` IN ('a','b')",
			"INSERT INTO `tags` (`name`,`note`) VALUES ('a',''),('b','') ON DUPLICATE KEY UPDATE " +
				"`name`=IF((@sf_met := CONCAT_WS(':', '<nonce>', IF((`name` <=> VALUES(`name`)), 'k', 'o'), HEX(`id`))) IS NULL, `name`, `name`) " +
				"RETURNING *, CASE @sf_met WHEN CONCAT_WS(':', '<nonce>', 'k', HEX(`id`)) THEN 1 WHEN CONCAT_WS(':', '<nonce>', 'o', HEX(`id`)) THEN 2 ELSE 0 END",
			"SELECT * FROM `tags` WHERE `tags`.`name` IN ('a','b') LOCK IN SHARE MODE",
		},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		dry, log, r := e.dryRunInTx(t)
		rows := []Tag{{Name: "b"}, {Name: "a"}}
		created, err := safefind.FindOrCreateAll(dry, &rows, "name")
		require.NoError(t, err)
		assert.Equal(t, []bool{false, false}, created)
		want := golden[e.name]
		if e.name == "mysql" && !strings.Contains(serverVersion(t, e), "MariaDB") {
			// MySQL 8: no RETURNING, so a plain INSERT.
			want = append([]string(nil), want...)
			want[1] = "INSERT INTO `tags` (`name`,`note`) VALUES ('a',''),('b','')"
			want[2] = strings.Replace(want[2], "LOCK IN SHARE MODE", "FOR SHARE", 1)
		}
		assert.Equal(t, want, withoutNonces(log.statements()))
		assert.Equal(t, []string{"BEGIN"}, r.Statements(), "DryRun sends nothing")
		assert.Equal(t, []Tag{{Name: "b"}, {Name: "a"}}, rows, "DryRun leaves the rows alone")
	})
}

// withoutNonces replaces the nonce of a marked upsert (MarkMet) with
// <nonce>: it differs on every statement.
func withoutNonces(stmts []string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = nonceRE.ReplaceAllString(s, "'<nonce>'")
	}
	return out
}

var nonceRE = regexp.MustCompile(`'[0-9a-f]{24}'`)
