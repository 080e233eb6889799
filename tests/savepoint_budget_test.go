package tests

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// warnLog keeps what GORM's logger is asked to warn about.
type warnLog struct {
	logger.Interface
	mu    sync.Mutex
	warns []string
}

func (l *warnLog) LogMode(logger.LogLevel) logger.Interface { return l }

func (l *warnLog) Warn(_ context.Context, msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warns = append(l.warns, fmt.Sprintf(msg, args...))
}

func (l *warnLog) taken() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.warns
	l.warns = nil
	return w
}

// withWarnLog makes e.db log to a warnLog.
func withWarnLog(e *env) *warnLog {
	l := &warnLog{Interface: logger.Discard}
	e.db.Config.Logger = l
	return l
}

// nested opens a GORM nested transaction in tx that commits: its savepoint
// is kept (GORM never releases it).
func nested(t *testing.T, tx *gorm.DB, name string) {
	t.Helper()
	require.NoError(t, tx.Transaction(func(tx *gorm.DB) error {
		return tx.Create(&Tag{Name: name}).Error
	}))
}

// On PostgreSQL, by default, FindOrCreate keeps no transaction above 64
// savepoints: from the 65th miss on, its INSERT skips conflicts instead
// (counted in BudgetSwitches), and a lost race then needs no savepoint
// either. No warning: safefind never takes a transaction past its budget.
func TestSavepointBudgetSwitch(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name != "postgres" {
			t.Skip("only PostgreSQL needs savepoints around FindOrCreate's INSERT")
		}
		e.reset(t, &Tag{})
		warns := withWarnLog(e)
		before := e.plugin.Stats()
		db, r := e.recorded(e.db)
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			for i := range 70 {
				created, err := safefind.FindOrCreate(tx, &Tag{}, Tag{Name: fmt.Sprint("k", i)})
				require.NoError(t, err)
				require.True(t, created)
			}
			// A lost race past the budget: the winner's row, no savepoint.
			winner := Tag{Name: "lost", Note: "winner"}
			ctx := withInject(tx.Statement.Context, func() { require.NoError(t, e.other.Create(&winner).Error) })
			var got Tag
			created, err := safefind.FindOrCreate(tx.WithContext(ctx), &got, Tag{Name: "lost"})
			require.NoError(t, err)
			assert.False(t, created)
			assert.Equal(t, winner, got)
			return nil
		}))
		assert.Equal(t, 64, r.Savepoints(), "savepoints sent, at the driver")
		after := e.plugin.Stats()
		assert.Equal(t, int64(64), after.Savepoints-before.Savepoints)
		assert.Equal(t, int64(7), after.BudgetSwitches-before.BudgetSwitches)
		assert.Zero(t, after.OverBudget-before.OverBudget)
		assert.Empty(t, warns.taken())
		assert.Equal(t, int64(71), e.count(t, &Tag{}))
	})
}

// Any code that takes a transaction past the budget is reported once per
// transaction, through GORM's logger with the caller's file:line and to the
// observer; FindOrCreate in that transaction then does without a savepoint.
// Savepoints rolled back do not count, and transactions never share counts.
func TestSavepointBudgetWarning(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev := &events{}
			e := open(t, name, safefind.WithSavepointBudget(3), safefind.WithObserver(ev.observe))
			e.reset(t, &Tag{})
			warns := withWarnLog(e)

			require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
				for i := range 3 {
					nested(t, tx, fmt.Sprint("n", i))
				}
				assert.Empty(t, warns.taken(), "at the budget, not past it")
				nested(t, tx, "n3") // the 4th: past the budget
				nested(t, tx, "n4")
				return nil
			}))
			w := warns.taken()
			require.Len(t, w, 1, "once per transaction")
			assert.Contains(t, w[0], "budget of 3")
			assert.Contains(t, w[0], "savepoint_budget_test.go:", "the caller's file:line: %s", w[0])
			assert.Equal(t, int64(1), e.plugin.Stats().OverBudget)
			var kinds []string
			for _, s := range ev.take(t) {
				if strings.Contains(s, "budget") {
					kinds = append(kinds, s)
				}
			}
			assert.Equal(t, []string{" budget exceeded  0"}, kinds)

			// Rolled back savepoints keep nothing.
			require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
				for range 10 {
					require.NoError(t, tx.Exec("SAVEPOINT x").Error)
					require.NoError(t, tx.Exec("ROLLBACK TO SAVEPOINT x").Error)
					require.NoError(t, tx.Exec("RELEASE SAVEPOINT x").Error)
				}
				return nil
			}))
			assert.Empty(t, warns.taken(), "rolled back savepoints do not count")

			// Two transactions at once, each at the budget: no warning.
			var wg sync.WaitGroup
			if name == "sqlite" {
				wg.Add(1) // SQLite has one writer: one transaction
			} else {
				wg.Add(2)
			}
			for i := range 2 {
				if name == "sqlite" && i == 1 {
					break
				}
				go func() {
					defer wg.Done()
					assert.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
						for j := range 3 {
							if err := tx.Transaction(func(tx *gorm.DB) error {
								return tx.Create(&Tag{Name: fmt.Sprintf("c%d-%d", i, j)}).Error
							}); err != nil {
								return err
							}
						}
						return nil
					}))
				}()
			}
			wg.Wait()
			assert.Empty(t, warns.taken(), "transactions do not share counts")
			assert.Equal(t, int64(1), e.plugin.Stats().OverBudget)
		})
	}
}

// FindOrCreate in a PostgreSQL transaction that other code took to the
// budget uses no savepoint; a GORM nested transaction rolled back is not
// counted, but the writes made after it in its re-established savepoint are.
func TestSavepointBudgetSharedWithGORM(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name != "postgres" {
			t.Skip("only PostgreSQL needs savepoints around FindOrCreate's INSERT")
		}
		x := open(t, e.name, safefind.WithSavepointBudget(2))
		x.reset(t, &Tag{})
		db, r := x.recorded(x.db)
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			nested(t, tx, "kept")
			// A nested transaction that fails: rolled back, not kept.
			require.Error(t, tx.Transaction(func(tx *gorm.DB) error {
				require.NoError(t, tx.Create(&Tag{Name: "rolled back"}).Error)
				return fmt.Errorf("fail")
			}))
			_, err := safefind.FindOrCreate(tx, &Tag{}, Tag{Name: "a"}) // 2nd kept savepoint
			require.NoError(t, err)
			_, err = safefind.FindOrCreate(tx, &Tag{}, Tag{Name: "b"}) // at the budget: none
			require.NoError(t, err)
			return nil
		}))
		assert.Equal(t, 3, r.Savepoints())
		assert.Equal(t, int64(1), x.plugin.Stats().BudgetSwitches)
		assert.Equal(t, int64(3), x.count(t, &Tag{}))
	})
}

// With WithSavepointBudgetError, the SAVEPOINT that would pass the budget
// fails with ErrSavepointBudget before it is sent.
func TestSavepointBudgetError(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := open(t, name, safefind.WithSavepointBudget(2), safefind.WithSavepointBudgetError())
			e.reset(t, &Tag{})
			db, r := e.recorded(e.db)
			err := db.Transaction(func(tx *gorm.DB) error {
				require.NoError(t, tx.Exec("SAVEPOINT a").Error)
				require.NoError(t, tx.Exec("SAVEPOINT b").Error)
				err := tx.Exec("SAVEPOINT c").Error
				require.ErrorIs(t, err, safefind.ErrSavepointBudget)
				assert.Contains(t, err.Error(), "savepoint_budget_test.go:")
				require.ErrorIs(t, tx.Exec("SAVEPOINT d").Error, safefind.ErrSavepointBudget)
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, 2, r.Savepoints(), "the refused ones were not sent")
			assert.Equal(t, int64(1), e.plugin.Stats().OverBudget)
			assert.Equal(t, int64(2), e.plugin.Stats().Savepoints, "refused statements are not counted")

			// A GORM nested transaction past the budget: GORM discards its
			// SAVEPOINT's error, so its statements are refused too, and
			// nothing it wrote can be committed.
			err = e.db.Transaction(func(tx *gorm.DB) error {
				require.NoError(t, tx.Create(&Tag{Name: "outer"}).Error)
				require.NoError(t, tx.Exec("SAVEPOINT a").Error)
				require.NoError(t, tx.Exec("SAVEPOINT b").Error)
				nestedErr := tx.Transaction(func(tx *gorm.DB) error {
					return tx.Create(&Tag{Name: "nested"}).Error
				})
				require.ErrorIs(t, nestedErr, safefind.ErrSavepointBudget)
				return nil // the caller even ignores it
			})
			if err == nil { // GORM's MySQL dialector reports the SAVEPOINT's error to the commit
				assert.Equal(t, int64(1), e.count(t, &Tag{}, "name = ?", "outer"))
			}
			assert.Zero(t, e.count(t, &Tag{}, "name = ?", "nested"), "nothing of the refused nested transaction is committed")
		})
	}
}

// The per-transaction state does not outlive the transaction: 100,000
// transactions with savepoints in a row leave the heap flat.
func TestSavepointStateDoesNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 transactions")
	}
	db, err := gorm.Open(sqlite.Open("file:leak?mode=memory&cache=shared"), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
	require.NoError(t, err)
	p := safefind.New(safefind.WithSavepointBudget(64))
	require.NoError(t, db.Use(p))
	sqlDB, err := db.DB()
	require.NoError(t, err)
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(1)

	run := func(n int) {
		for range n {
			tx := db.Begin()
			require.NoError(t, tx.Exec("SAVEPOINT a").Error)
			require.NoError(t, tx.Exec("SAVEPOINT b").Error)
			require.NoError(t, tx.Commit().Error)
		}
	}
	heap := func() uint64 {
		var m runtime.MemStats
		for range 3 { // the second cycle runs the cleanups the first queued
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	run(10_000)
	start := heap()
	run(100_000)
	require.Positive(t, p.Stats().TrackedTransactions, "the transactions had state")
	end := heap()
	// The cleanups run on a goroutine of their own after a collection.
	waitFor(t, "the state of finished transactions to go", func() bool {
		runtime.GC()
		return p.Stats().TrackedTransactions == 0
	})
	t.Logf("heap in use: %d KiB after 10,000 transactions, %d KiB after 100,000 more", start>>10, end>>10)
	assert.Less(t, end, start+4<<20, "the heap grew")
}
