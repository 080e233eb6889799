package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/mattn/go-sqlite3"
	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Faults injected for real: a deadlock, a killed connection, an expired
// context, a busy database. The server restart is in restart_test.go.

// waitFor polls cond, the server's own view of a state the test cannot be
// told of otherwise (a lock wait, a connection gone), for up to 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitForLockWait waits until n transactions wait for a row lock. waiter
// delivers the result of the statement expected to wait: if it finishes
// first, it did not wait, and the test fails at once with its error.
func (e *env) waitForLockWait(t *testing.T, n int, waiter <-chan error) {
	t.Helper()
	query := map[string]string{
		"postgres": "SELECT COUNT(*) FROM pg_locks WHERE NOT granted",
		"mysql":    "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
	}[e.name]
	waitFor(t, fmt.Sprintf("%d lock wait(s)", n), func() bool {
		select {
		case err := <-waiter:
			t.Fatalf("the statement expected to wait for a row lock finished without waiting: %v", err)
		default:
		}
		var waiting int
		require.NoError(t, e.other.Raw(query).Scan(&waiting).Error)
		return waiting >= n
	})
}

// backendID returns the server's id of the connection tx runs on.
func (e *env) backendID(t *testing.T, tx *gorm.DB) int64 {
	t.Helper()
	query := map[string]string{"postgres": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}[e.name]
	var id int64
	require.NoError(t, tx.Raw(query).Scan(&id).Error)
	return id
}

// kill terminates the server connection id from another session and waits
// until it is gone.
func (e *env) kill(t *testing.T, id int64) {
	t.Helper()
	switch e.name {
	case "postgres":
		var ok bool
		require.NoError(t, e.other.Raw("SELECT pg_terminate_backend(?, 20000)", id).Scan(&ok).Error)
		require.True(t, ok)
	case "mysql":
		require.NoError(t, e.other.Exec(fmt.Sprintf("KILL CONNECTION %d", id)).Error)
		waitFor(t, "the killed connection to go", func() bool {
			var n int
			require.NoError(t, e.other.Raw("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n).Error)
			return n == 0
		})
	}
}

// A MySQL/MariaDB deadlock inside the caller's transaction: InnoDB rolls the
// whole transaction back and the connection carries on in autocommit.
// safefind returns the retryable error at once, sends nothing more, and
// refuses every later statement on that transaction, so nothing the caller
// does after the deadlock is committed. The control shows what happens
// without safefind: the statement after the deadlock is committed.
func TestDeadlockEndsTransaction(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name != "mysql" {
			t.Skip("only InnoDB ends a transaction and goes on in autocommit; PostgreSQL refuses statements in an aborted transaction itself")
		}
		// deadlock runs the scenario with caller as transaction A, and
		// returns A's find-or-create error and the error of A's next
		// statement.
		deadlock := func(t *testing.T, caller *gorm.DB, find op) (findErr, nextErr error, got Tag, r *Recorder) {
			e.reset(t, &Tag{}, &Member{})
			require.NoError(t, e.other.Create(&Member{OrgID: 1, Email: "lock@example.com", Handle: "lock"}).Error)

			// B holds the key "k" and is the bigger transaction, so that
			// InnoDB picks A as the victim.
			b := e.other.Begin()
			require.NoError(t, b.Error)
			defer b.Rollback()
			require.NoError(t, b.Create(&Tag{Name: "k", Note: "b"}).Error)
			for i := range 20 {
				require.NoError(t, b.Create(&Tag{Name: fmt.Sprintf("b%d", i)}).Error)
			}

			a := caller.Begin()
			require.NoError(t, a.Error)
			defer a.Rollback()
			require.NoError(t, a.Create(&Tag{Name: "before"}).Error)
			locked := a.Model(&Member{}).Where("handle = ?", "lock").Update("age", 1)
			require.NoError(t, locked.Error)
			require.Equal(t, int64(1), locked.RowsAffected, "A holds the row lock B will wait for")

			bDone := make(chan error, 1)
			go func() {
				bDone <- b.Model(&Member{}).Where("handle = ?", "lock").Update("age", 2).Error
			}()
			e.waitForLockWait(t, 1, bDone)

			// A's INSERT of "k" waits for B, which waits for A.
			rec, r := e.recorded(a)
			_, findErr = find.fn(rec, &got, Tag{Name: "k"})
			require.NoError(t, <-bDone, "B went on once A was rolled back")
			nextErr = a.Create(&Tag{Name: "after"}).Error
			require.NoError(t, b.Commit().Error)
			return findErr, nextErr, got, r
		}

		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				before := e.plugin.Stats()
				findErr, nextErr, got, r := deadlock(t, e.db, o)

				var me *gomysql.MySQLError
				require.ErrorAs(t, findErr, &me)
				assert.Equal(t, uint16(1213), me.Number)
				assert.True(t, safefind.IsRetryable(findErr))
				assert.Zero(t, got, "dest untouched")
				assert.Len(t, r.Statements(), map[string]int{"FindOrCreate": 2, "CreateOrFind": 1}[o.name],
					"nothing sent after the deadlock: %q", r.Statements())

				assert.ErrorIs(t, nextErr, safefind.ErrTransactionEnded)
				assert.True(t, safefind.IsRetryable(nextErr))
				assert.Zero(t, e.count(t, &Tag{}, "name IN ?", []string{"before", "after"}),
					"nothing of A is committed, before or after the deadlock")
				assert.Equal(t, int64(1), e.count(t, &Tag{}, "name = ?", "k"))
				after := e.plugin.Stats()
				assert.Equal(t, before.Created, after.Created)
				assert.Equal(t, before.Found, after.Found)

				// The caller retries the whole transaction, and finds B's row.
				var tag Tag
				var created bool
				err := safefind.RetryTransaction(e.db, func(tx *gorm.DB) error {
					var err error
					created, err = o.fn(tx, &tag, Tag{Name: "k"})
					return err
				})
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, "b", tag.Note)
			})
		}

		t.Run("control without safefind", func(t *testing.T) {
			// A without the plugin: the same scenario, GORM's FirstOrCreate.
			gormFirstOrCreate := op{"FirstOrCreate", func(tx *gorm.DB, dest any, conds ...any) (bool, error) {
				r := tx.FirstOrCreate(dest, conds...)
				return r.RowsAffected == 1, r.Error
			}}
			findErr, nextErr, _, _ := deadlock(t, e.other, gormFirstOrCreate)
			var me *gomysql.MySQLError
			require.ErrorAs(t, findErr, &me)
			assert.Equal(t, uint16(1213), me.Number)
			assert.NoError(t, nextErr, "the connection ran the next statement in autocommit")
			assert.Equal(t, int64(1), e.count(t, &Tag{}, "name = ?", "after"),
				"without safefind, a write after the deadlock is committed although the transaction was rolled back")
		})
	})
}

// The server connection killed between the SELECT and the INSERT, and
// between the INSERT's conflict and the read of the winner's row: an error
// comes back, no partial row is left, Stats stay consistent, and the next
// call succeeds.
func TestConnectionKilled(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite is in-process: there is no server connection to kill")
		}
		t.Run("between the SELECT and the INSERT, in a transaction", func(t *testing.T) {
			e.reset(t, &Tag{})
			before := e.plugin.Stats()
			tx := e.db.Begin()
			require.NoError(t, tx.Error)
			defer tx.Rollback()
			require.NoError(t, tx.Create(&Tag{Name: "written before"}).Error)
			id := e.backendID(t, tx)
			ctx := withInject(context.Background(), func() { e.kill(t, id) })

			tag := Tag{Note: "attrs"}
			created, err := safefind.FindOrCreate(tx.WithContext(ctx), &tag, Tag{Name: "k"})
			require.Error(t, err)
			assert.False(t, created)
			assert.Equal(t, Tag{Note: "attrs"}, tag, "dest as the caller prepared it")
			assert.Error(t, tx.Commit().Error, "the transaction is gone")
			assert.Zero(t, e.count(t, &Tag{}), "no partial row, nothing of the transaction")
			after := e.plugin.Stats()
			assert.Equal(t, before.Created, after.Created)
			assert.Equal(t, before.Found, after.Found)
			assert.Equal(t, before.Conflicts, after.Conflicts)

			created, err = safefind.FindOrCreate(e.db, &tag, Tag{Name: "k"})
			require.NoError(t, err, "the next call succeeds")
			assert.True(t, created)
			assert.Equal(t, before.Created+1, e.plugin.Stats().Created)
		})

		t.Run("between the conflict and the read, in a transaction", func(t *testing.T) {
			e.reset(t, &Tag{})
			before := e.plugin.Stats()
			tx := e.db.Begin()
			require.NoError(t, tx.Error)
			defer tx.Rollback()
			id := e.backendID(t, tx)
			winner := Tag{Name: "k", Note: "winner"}
			ctx := withInject(context.Background(), func() { require.NoError(t, e.other.Create(&winner).Error) })
			ctx = withAfterInsert(ctx, func() { e.kill(t, id) })

			var tag Tag
			created, err := safefind.FindOrCreate(tx.WithContext(ctx), &tag, Tag{Name: "k"})
			require.Error(t, err)
			assert.False(t, created)
			assert.Zero(t, tag)
			assert.Error(t, tx.Commit().Error)
			assert.Equal(t, int64(1), e.count(t, &Tag{}), "the winner's row, alone")
			after := e.plugin.Stats()
			assert.Equal(t, before.Conflicts+1, after.Conflicts, "the lost race was counted")
			assert.Equal(t, before.Found, after.Found)
			assert.Equal(t, before.Created, after.Created)

			created, err = safefind.FindOrCreate(e.db, &tag, Tag{Name: "k"})
			require.NoError(t, err)
			assert.False(t, created)
			assert.Equal(t, winner, tag)
		})

		t.Run("between the SELECT and the INSERT, outside a transaction", func(t *testing.T) {
			// One connection, so the INSERT goes to the killed one. The driver
			// may notice before sending and reconnect (database/sql retries a
			// connection known bad); either way, no wrong or partial row.
			e.reset(t, &Tag{})
			one := open(t, e.name) // a pool of its own, with the plugin and the hooks
			one.sqlDB.SetMaxOpenConns(1)
			id := e.backendID(t, one.db)
			ctx := withInject(context.Background(), func() { e.kill(t, id) })
			var tag Tag
			created, err := safefind.FindOrCreate(one.db.WithContext(ctx), &tag, Tag{Name: "k"})
			if err != nil {
				assert.False(t, created)
				assert.Zero(t, tag)
				assert.Zero(t, e.count(t, &Tag{}))
				assert.Zero(t, one.plugin.Stats().Created)
				created, err = safefind.FindOrCreate(one.db, &tag, Tag{Name: "k"})
				require.NoError(t, err, "the next call succeeds")
			}
			assert.True(t, created)
			assert.Equal(t, "k", tag.Name)
			assert.Equal(t, int64(1), e.count(t, &Tag{}, "id = ? AND name = ?", tag.ID, "k"))
			assert.Equal(t, int64(1), one.plugin.Stats().Created)
		})
	})
}

// A context that expires while the call waits for another transaction's row
// lock: the call returns the context's error promptly, and the caller's
// transaction is in no half state. Either it is intact, or (the drivers
// close a connection whose query was cancelled) every later statement and
// the COMMIT fail, and nothing it wrote is committed.
func TestContextDeadlineOnRowLock(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite waits for its lock in the busy handler: see TestSQLiteBusy")
		}
		for _, o := range ops {
			for _, inTx := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/inTx=%v", o.name, inTx), func(t *testing.T) {
					e.reset(t, &Tag{})
					holder := e.other.Begin()
					require.NoError(t, holder.Error)
					defer holder.Rollback()
					require.NoError(t, holder.Create(&Tag{Name: "k", Note: "holder"}).Error)

					db := e.db
					var tx *gorm.DB
					if inTx {
						tx = e.db.Begin()
						require.NoError(t, tx.Error)
						defer tx.Rollback()
						require.NoError(t, tx.Create(&Tag{Name: "mine"}).Error)
						db = tx
					}
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					defer cancel()
					start := time.Now()
					var tag Tag
					created, err := o.fn(db.WithContext(ctx), &tag, Tag{Name: "k"})
					elapsed := time.Since(start)
					require.ErrorIs(t, err, context.DeadlineExceeded)
					assert.False(t, created)
					assert.Zero(t, tag)
					assert.Less(t, elapsed, 10*time.Second, "promptly after the deadline")

					if inTx {
						next := tx.Exec("SELECT 1").Error
						commit := tx.Commit().Error
						if next != nil {
							assert.Error(t, commit, "a transaction that refuses statements does not commit")
						} else {
							assert.NoError(t, commit)
						}
						if commit != nil {
							assert.Zero(t, e.count(t, &Tag{}, "name = ?", "mine"), "nothing of a failed transaction")
						} else {
							assert.Equal(t, int64(1), e.count(t, &Tag{}, "name = ?", "mine"))
						}
					}
					require.NoError(t, holder.Commit().Error)
					var got Tag
					created, err = o.fn(e.db, &got, Tag{Name: "k"})
					require.NoError(t, err)
					assert.False(t, created)
					assert.Equal(t, "holder", got.Note)
					assert.Equal(t, int64(1), e.count(t, &Tag{}, "name = ?", "k"))
				})
			}
		}
	})
}

// SQLite: a writer holds the lock beyond the busy timeout. The call fails
// with a retryable SQLITE_BUSY and writes nothing, never a wrong row; once
// the writer commits, the retried transaction returns the writer's row.
func TestSQLiteBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	dsn := "file:" + path + "?_journal_mode=WAL&_busy_timeout=100"
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	p := safefind.New()
	require.NoError(t, db.Use(p))
	require.NoError(t, db.AutoMigrate(&Tag{}))
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { sqlDB.Close() })

	holderDB, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	holderSQL, err := holderDB.DB()
	require.NoError(t, err)
	t.Cleanup(func() { holderSQL.Close() })

	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			require.NoError(t, holderDB.Exec("DELETE FROM tags").Error)
			holder := holderDB.Begin()
			require.NoError(t, holder.Error)
			defer holder.Rollback()
			held := Tag{Name: "k", Note: "holder"}
			require.NoError(t, holder.Create(&held).Error) // takes the write lock

			tag := Tag{Note: "mine"}
			retries := p.Stats().Retries
			created, err := o.fn(db, &tag, Tag{Name: "k"})
			// Not tried again: the busy timeout already waited.
			assert.Equal(t, retries, p.Stats().Retries)
			var se sqlite3.Error
			require.ErrorAs(t, err, &se)
			assert.Equal(t, sqlite3.ErrBusy, se.Code)
			assert.True(t, safefind.IsRetryable(err))
			assert.False(t, created)
			assert.Equal(t, Tag{Note: "mine"}, tag, "dest as the caller prepared it")

			attempts := 0
			err = safefind.RetryTransaction(db, func(tx *gorm.DB) error {
				attempts++
				tag = Tag{Note: "mine"}
				var err error
				created, err = o.fn(tx, &tag, Tag{Name: "k"})
				if attempts == 1 {
					require.True(t, safefind.IsRetryable(err), "%v", err)
					require.NoError(t, holder.Commit().Error)
				}
				return err
			}, safefind.RetryBackoff(time.Millisecond, time.Millisecond))
			require.NoError(t, err)
			assert.Equal(t, 2, attempts)
			assert.False(t, created)
			assert.Equal(t, held, tag, "the writer's row")
			var n int64
			require.NoError(t, holderDB.Model(&Tag{}).Count(&n).Error)
			assert.Equal(t, int64(1), n)
		})
	}
}
