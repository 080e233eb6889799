package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Statements and savepoints per call, counted at the driver. These are the
// numbers of the README's guarantees table.
func TestStatementBudgets(t *testing.T) {
	type budget struct {
		op, path string
		inTx     bool
		stmts    int // exact, BEGIN/COMMIT included when the call sends them
		sps      int
	}
	budgets := func(e *env) []budget {
		sp := 0
		if e.abortsTx() {
			sp = 1
		}
		// PostgreSQL inserts or reads in one statement (WITH ins AS (INSERT
		// ... RETURNING *) SELECT ...).
		hit := 2
		if e.name == "postgres" {
			hit = 1
		}
		return []budget{
			{"FindOrCreate", "hit", false, 1, 0},
			{"FindOrCreate", "hit", true, 1, 0},
			{"FindOrCreate", "miss", false, 2, 0},
			{"FindOrCreate", "miss", true, 2 + 2*sp, sp}, // + SAVEPOINT, RELEASE
			{"CreateOrFind", "hit", false, hit, 0},
			{"CreateOrFind", "hit", true, hit, 0},
			{"CreateOrFind", "miss", false, 1, 0},
			{"CreateOrFind", "miss", true, 1, 0},
		}
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		require.NoError(t, e.other.Create(&Tag{Name: "exists"}).Error)
		for i, b := range budgets(e) {
			t.Run(fmt.Sprintf("%s/%s/tx=%v", b.op, b.path, b.inTx), func(t *testing.T) {
				fn := safefind.FindOrCreate
				if b.op == "CreateOrFind" {
					fn = safefind.CreateOrFind
				}
				key := "exists"
				if b.path == "miss" {
					key = fmt.Sprintf("new-%d", i)
				}
				r := &Recorder{}
				var counter safefind.Counter
				ctx := safefind.WithCounter(withRecorder(context.Background(), r), &counter)
				call := func(tx *gorm.DB) error {
					var tag Tag
					created, err := fn(tx.WithContext(ctx), &tag, Tag{Name: key})
					assert.Equal(t, b.path == "miss", created)
					assert.NotZero(t, tag.ID)
					return err
				}
				if b.inTx {
					require.NoError(t, e.db.Transaction(call))
				} else {
					require.NoError(t, call(e.db))
				}
				stmts := r.Statements()
				assert.Len(t, stmts, b.stmts, "%q", stmts)
				assert.Equal(t, b.sps, r.Savepoints(), "%q", stmts)
				// The plugin's own scoped counter agrees with the driver.
				assert.EqualValues(t, b.sps, counter.Savepoints())
				assert.EqualValues(t, b.stmts, counter.Statements())
				if !b.inTx {
					assert.LessOrEqual(t, len(stmts), 4, "a miss outside a transaction: at most 4 round trips")
				}
			})
		}
	})
}

// A model with create hooks keeps GORM's default transaction around the
// INSERT outside a transaction: BEGIN and COMMIT, still within 4.
func TestBudgetWithHooks(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Account{})
		for _, o := range ops {
			db, r := e.recorded(e.db)
			created, err := o.fn(db, &Account{}, Account{Email: o.name})
			require.NoError(t, err)
			require.True(t, created)
			stmts := r.Statements()
			assert.LessOrEqual(t, len(stmts), 4, "%q", stmts)
			assert.Equal(t, "BEGIN", stmts[len(stmts)-3], "%q", stmts)
			assert.Equal(t, "COMMIT", stmts[len(stmts)-1], "%q", stmts)
			assert.Zero(t, r.Savepoints())
		}
	})
}

// Every SAVEPOINT that goes through the DB is counted, GORM's nested
// transactions too, and counters carried by different contexts never mix.
func TestSavepointCounting(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		before := e.plugin.Stats().Savepoints
		var wg sync.WaitGroup
		counters := make([]safefind.Counter, 4)
		for i := range counters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := safefind.WithCounter(context.Background(), &counters[i])
				err := e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					for j := 0; j <= i; j++ {
						if err := tx.Transaction(func(tx *gorm.DB) error {
							return tx.Create(&Tag{Name: fmt.Sprintf("n-%d-%d", i, j)}).Error
						}); err != nil {
							return err
						}
					}
					return nil
				})
				assert.NoError(t, err)
			}()
		}
		wg.Wait()
		for i := range counters {
			assert.EqualValues(t, i+1, counters[i].Savepoints(), "counter %d", i)
			assert.EqualValues(t, 2*(i+1), counters[i].Statements(), "counter %d: SAVEPOINT and INSERT per nested transaction", i)
		}
		assert.EqualValues(t, 1+2+3+4, e.plugin.Stats().Savepoints-before)
	})
}

// The SQL safefind sends, per dialect, rendered with GORM's DryRun: the
// lookup, the savepoint where there is one, the INSERT and the read of the
// winner. Nothing is sent.
func TestGoldenSQL(t *testing.T) {
	golden := map[string]map[string][]string{
		"sqlite": {
			"FindOrCreate": {
				"SELECT * FROM `tags` WHERE `tags`.`name` = \"go\" LIMIT 1",
				"INSERT INTO `tags` (`name`,`note`) VALUES (\"go\",\"\") RETURNING `id`",
				"SELECT * FROM `tags` WHERE `tags`.`name` = \"go\" LIMIT 1",
			},
			"CreateOrFind": {
				"INSERT INTO `tags` (`name`,`note`) VALUES (\"go\",\"\") ON CONFLICT DO NOTHING RETURNING `id`",
				"SELECT * FROM `tags` WHERE `tags`.`name` = \"go\" LIMIT 1",
			},
		},
		"postgres": {
			"FindOrCreate": {
				`SELECT * FROM "tags" WHERE "tags"."name" = 'go' LIMIT 1`,
				`SAVEPOINT safefind_insert`,
				`INSERT INTO "tags" ("name","note") VALUES ('go','') RETURNING "id"`,
				`RELEASE SAVEPOINT safefind_insert`,
				`SELECT * FROM "tags" WHERE "tags"."name" = 'go' LIMIT 1`,
			},
			"CreateOrFind": {
				`WITH ins AS (INSERT INTO "tags" ("name","note") VALUES ('go','') ON CONFLICT DO NOTHING RETURNING *) ` +
					`SELECT *, TRUE FROM ins UNION ALL (SELECT *, FALSE FROM "tags" WHERE "tags"."name" = 'go' ` +
					`AND NOT EXISTS (SELECT 1 FROM ins) LIMIT 1)`,
			},
		},
		// MariaDB; MySQL has neither RETURNING nor LOCK IN SHARE MODE in GORM's rendering.
		"mysql": {
			"FindOrCreate": {
				"SELECT * FROM `tags` WHERE `tags`.`name` = 'go' LIMIT 1",
				"INSERT INTO `tags` (`name`,`note`) VALUES ('go','') RETURNING `id`",
				"SELECT * FROM `tags` WHERE `tags`.`name` = 'go' LIMIT 1 LOCK IN SHARE MODE",
			},
			"CreateOrFind": {
				"INSERT INTO `tags` (`name`,`note`) VALUES ('go','') RETURNING `id`",
				"SELECT * FROM `tags` WHERE `tags`.`name` = 'go' LIMIT 1 LOCK IN SHARE MODE",
			},
		},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				dry, log, r := e.dryRunInTx(t)
				created, err := o.fn(dry, &Tag{}, Tag{Name: "go"})
				require.NoError(t, err)
				assert.False(t, created)
				want := golden[e.name][o.name]
				if e.name == "mysql" && !strings.Contains(serverVersion(t, e), "MariaDB") {
					want = append([]string(nil), want...)
					for i := range want {
						want[i] = strings.Replace(want[i], "LOCK IN SHARE MODE", "FOR SHARE", 1)
						want[i] = strings.Replace(want[i], " RETURNING `id`", "", 1)
					}
				}
				assert.Equal(t, want, log.statements())
				assert.Equal(t, []string{"BEGIN"}, r.Statements(), "DryRun sends nothing")
				assert.EqualValues(t, 0, e.count(t, &Tag{}))
			})
		}
	})
}

// The single-row read orders by primary key, as FirstOrCreate's, only where
// it may find more than one row: a lookup that the guard found covers a
// unique key finds one at most, and the server sorts nothing. With the
// guard off, on a lookup that no unique key covers, the read orders, and
// returns the row FirstOrCreate returns: the first by primary key.
func TestReadOrder(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := open(t, name, safefind.WithUniqueGuard(false))
			e.reset(t, &Tag{})
			reads := func(fn func(db *gorm.DB) error) []string {
				log := &sqlLog{Interface: e.db.Logger}
				require.NoError(t, fn(e.db.Session(&gorm.Session{Logger: log})))
				var selects []string
				for _, s := range log.statements() {
					if strings.HasPrefix(s, "SELECT") {
						selects = append(selects, s)
					}
				}
				return selects
			}
			q := func(s string) string { // the dialect's quotes
				if name == "postgres" {
					return strings.ReplaceAll(s, "`", `"`)
				}
				return s
			}
			require.NoError(t, e.other.Create(&Tag{Name: "go", Note: "first"}).Error)
			require.NoError(t, e.other.Create(&Tag{Name: "go2", Note: "first"}).Error)
			require.NoError(t, e.other.Create(&Tag{Name: "go3", Note: "first"}).Error)

			// With the guard off nothing is known of the lookup's keys: ORDER
			// BY the primary key (with it on, none on a unique key: the
			// golden SQL above), and the row FirstOrCreate finds.
			var mine, theirs Tag
			got := reads(func(db *gorm.DB) error {
				_, err := safefind.FindOrCreate(db.Where("note = ?", "first"), &mine)
				return err
			})
			require.Len(t, got, 1)
			assert.Contains(t, got[0], q("ORDER BY `tags`.`id` LIMIT 1"))
			require.NoError(t, e.db.Where("note = ?", "first").FirstOrCreate(&theirs).Error)
			assert.Equal(t, theirs, mine)
			// The caller's order is kept.
			got = reads(func(db *gorm.DB) error {
				_, err := safefind.FindOrCreate(db.Order("name DESC"), &mine, Tag{Name: "go"})
				return err
			})
			require.Len(t, got, 1)
			assert.Contains(t, got[0], "ORDER BY name DESC")
		})
	}
}

func serverVersion(t *testing.T, e *env) string {
	var v string
	require.NoError(t, e.other.Raw("SELECT VERSION()").Scan(&v).Error)
	return v
}

// sqlLog records the SQL GORM traces, DryRun statements included.
type sqlLog struct {
	logger.Interface
	mu   sync.Mutex
	sqls []string
}

func (l *sqlLog) LogMode(logger.LogLevel) logger.Interface { return l }

func (l *sqlLog) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	sql, _ := fc()
	l.mu.Lock()
	l.sqls = append(l.sqls, sql)
	l.mu.Unlock()
}

func (l *sqlLog) statements() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sqls...)
}

// dryRunInTx opens a transaction (ended with the test) and returns a DryRun
// session on it that traces into log, with the recorder of what was sent.
func (e *env) dryRunInTx(t *testing.T) (dry *gorm.DB, log *sqlLog, r *Recorder) {
	log = &sqlLog{Interface: e.db.Logger}
	r = &Recorder{}
	tx := e.db.WithContext(withRecorder(context.Background(), r)).Begin()
	require.NoError(t, tx.Error)
	t.Cleanup(func() { tx.Rollback() })
	return tx.Session(&gorm.Session{DryRun: true, Logger: log}), log, r
}

// Statements per call with Attrs, Assign and associations, by kind, counted
// at the driver: the Attrs, Assign and associations rows of the README's
// guarantees table.
func TestStatementBudgetsAttrsAssignAssociations(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		// ROLLBACK TO and RELEASE go in one round trip on PostgreSQL.
		rollback := []string{"ROLLBACK", "RELEASE"}
		// CreateOrFind with Assign on a row that exists: one upsert where
		// the dialect reports created from it with the row (PostgreSQL:
		// ON CONFLICT DO UPDATE outside a transaction, a WITH query of an
		// INSERT and an UPDATE inside one); with its affected rows, then a
		// read (MySQL/MariaDB); else INSERT, SELECT, UPDATE.
		upsert, upsertInTx := []string{"INSERT", "SELECT", "UPDATE"}, []string{"INSERT", "SELECT", "UPDATE"}
		switch e.name {
		case "postgres":
			rollback, upsert, upsertInTx = rollback[:1], upsert[:1], []string{"WITH"}
		case "mysql":
			upsert, upsertInTx = upsert[:2], upsertInTx[:2]
		}
		if e.name != "sqlite" {
			// The first upsert on a table reads the catalog once (its
			// kind on PostgreSQL, its unique keys on MySQL/MariaDB).
			e.reset(t, &Tag{})
			db, r := e.recorded(e.db)
			_, err := safefind.CreateOrFind(db.Where(&Tag{Name: "warm"}).Assign("note", "w"), &Tag{})
			require.NoError(t, err)
			assert.Equal(t, []string{"SELECT", "INSERT"}, kinds(r.Statements()), "the catalog, then the upsert")
		}
		cases := []struct {
			op, path string
			inTx     bool
			run      func(o op, db *gorm.DB) (bool, error)
			want     []string
		}{
			{"FindOrCreate", "Attrs, miss", false, func(o op, db *gorm.DB) (bool, error) {
				return o.fn(db.Where(&Tag{Name: "attrs-new"}).Attrs(Tag{Note: "n"}), &Tag{})
			}, []string{"SELECT", "INSERT"}},
			{"FindOrCreate", "Assign, hit", false, func(o op, db *gorm.DB) (bool, error) {
				return o.fn(db.Where(&Tag{Name: "exists"}).Assign("note", "a"), &Tag{})
			}, []string{"SELECT", "UPDATE"}},
			{"FindOrCreate", "Assign, hit", true, func(o op, db *gorm.DB) (bool, error) {
				return o.fn(db.Where(&Tag{Name: "exists"}).Assign("note", "b"), &Tag{})
			}, []string{"SELECT", "UPDATE"}},
			{"CreateOrFind", "Assign, hit", false, func(o op, db *gorm.DB) (bool, error) {
				return o.fn(db.Where(&Tag{Name: "exists"}).Assign("note", "c"), &Tag{})
			}, upsert},
			{"CreateOrFind", "Assign, hit", true, func(o op, db *gorm.DB) (bool, error) {
				return o.fn(db.Where(&Tag{Name: "exists"}).Assign("note", "d"), &Tag{})
			}, upsertInTx},
			{"CreateOrFind", "Assign, miss", false, func(o op, db *gorm.DB) (bool, error) {
				return o.fn(db.Where(&Tag{Name: "assign-new"}).Assign("note", "e"), &Tag{})
			}, []string{"INSERT"}},
			{"FindOrCreate", "associations, miss", false, func(o op, db *gorm.DB) (bool, error) {
				c := newCustomer("fc-miss")
				return o.fn(db.Where(&Customer{Name: c.Name}), &c)
			}, []string{"SELECT", "BEGIN", "INSERT", "INSERT", "INSERT", "INSERT", "COMMIT"}},
			{"FindOrCreate", "associations, miss", true, func(o op, db *gorm.DB) (bool, error) {
				c := newCustomer("fc-miss-tx")
				return o.fn(db.Where(&Customer{Name: c.Name}), &c)
			}, []string{"SELECT", "SAVEPOINT", "INSERT", "INSERT", "INSERT", "INSERT", "RELEASE"}},
			{"CreateOrFind", "associations, miss", false, func(o op, db *gorm.DB) (bool, error) {
				c := newCustomer("cf-miss")
				return o.fn(db.Where(&Customer{Name: c.Name}), &c)
			}, []string{"BEGIN", "INSERT", "INSERT", "INSERT", "INSERT", "COMMIT"}},
			{"CreateOrFind", "associations, hit", false, func(o op, db *gorm.DB) (bool, error) {
				c := newCustomer("exists")
				return o.fn(db.Where(&Customer{Name: c.Name}), &c)
			}, []string{"BEGIN", "INSERT", "INSERT", "ROLLBACK", "SELECT"}},
			{"CreateOrFind", "associations, hit", true, func(o op, db *gorm.DB) (bool, error) {
				c := newCustomer("exists")
				return o.fn(db.Where(&Customer{Name: c.Name}), &c)
			}, append(append([]string{"SAVEPOINT", "INSERT", "INSERT"}, rollback...), "SELECT")},
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s/tx=%v", c.op, c.path, c.inTx), func(t *testing.T) {
				e.reset(t, append([]any{&Tag{}}, customerTables...)...)
				require.NoError(t, e.other.Create(&Tag{Name: "exists"}).Error)
				require.NoError(t, e.other.Create(&Customer{Name: "exists"}).Error)
				o := ops[0]
				if c.op == "CreateOrFind" {
					o = ops[1]
				}
				db, r := e.recorded(e.db)
				var created bool
				call := func(tx *gorm.DB) (err error) {
					created, err = c.run(o, tx)
					return err
				}
				if c.inTx {
					require.NoError(t, db.Transaction(call))
				} else {
					require.NoError(t, call(db))
				}
				assert.Equal(t, strings.Contains(c.path, "miss"), created)
				want := c.want
				if c.inTx {
					want = append([]string{"BEGIN"}, append(want, "COMMIT")...)
				}
				assert.Equal(t, want, kinds(r.Statements()))
			})
		}
	})
}

// The upsert of CreateOrFind with Assign, per dialect, rendered with GORM's
// DryRun outside a transaction: one statement where the dialect tells what
// it did, then the read that a DryRun always shows.
func TestGoldenUpsertSQL(t *testing.T) {
	golden := map[string][]string{
		"sqlite": {
			// No upsert: INSERT, then the read (and, on a row that exists,
			// the UPDATE, which a DryRun's read never finds).
			"INSERT INTO `tags` (`name`,`note`) VALUES (\"go\",\"n\") ON CONFLICT DO NOTHING RETURNING `id`",
			"SELECT * FROM `tags` WHERE `tags`.`name` = \"go\" LIMIT 1",
		},
		"postgres": {
			`INSERT INTO "tags" ("name","note") VALUES ('go','n') ON CONFLICT ("name") DO UPDATE SET "note"='n' WHERE "tags"."name" = 'go'  RETURNING *,(xmax = 0)`,
			`SELECT * FROM "tags" WHERE "tags"."name" = 'go' LIMIT 1`,
		},
		"mysql": {
			"INSERT INTO `tags` (`name`,`note`) VALUES ('go','n') ON DUPLICATE KEY UPDATE `id`=LAST_INSERT_ID(`id`),`note`=IF(`name` = 'go', 'n', `note`)",
			"SELECT * FROM `tags` WHERE `tags`.`name` = 'go' LIMIT 1",
		},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		log := &sqlLog{Interface: e.db.Logger}
		db, r := e.recorded(e.db)
		dry := db.Session(&gorm.Session{DryRun: true, Logger: log})
		created, err := safefind.CreateOrFind(dry.Where(&Tag{Name: "go"}).Assign(Tag{Note: "n"}), &Tag{})
		require.NoError(t, err)
		assert.False(t, created)
		assert.Equal(t, golden[e.name], log.statements())
		assert.Empty(t, r.Statements(), "DryRun sends nothing, the catalog read included")

		db, r = e.recorded(e.db)
		created, err = safefind.CreateOrFind(db.Where(&Tag{Name: "go"}).Assign(Tag{Note: "n"}), &Tag{})
		require.NoError(t, err)
		assert.True(t, created)
		if e.name != "sqlite" {
			assert.Equal(t, []string{"SELECT", "INSERT"}, kinds(r.Statements()), "the DryRun cached nothing: the catalog is read now")
		}

		if e.name == "postgres" {
			// Inside a transaction: a WITH query, whose INSERT skips a
			// conflict on any key.
			dry, log, _ := e.dryRunInTx(t)
			_, err := safefind.CreateOrFind(dry.Where(&Tag{Name: "go"}).Assign(Tag{Note: "n"}), &Tag{})
			require.NoError(t, err)
			assert.Equal(t, []string{
				`WITH ins AS (INSERT INTO "tags" ("name","note") VALUES ('go','n') ON CONFLICT DO NOTHING RETURNING *), ` +
					`upd AS (UPDATE "tags" SET "note"='n' WHERE "tags"."name" = 'go' AND NOT EXISTS (SELECT 1 FROM ins) RETURNING *) ` +
					`SELECT *, TRUE FROM ins UNION ALL SELECT *, FALSE FROM upd`,
				`SELECT * FROM "tags" WHERE "tags"."name" = 'go' LIMIT 1`,
			}, log.statements())
		}
	})
}
