package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// errSerialization is a real driver error value that IsRetryable accepts on
// every dialect (IsRetryable does not look at which database sent it).
var errSerialization = &pgconn.PgError{Code: "40001", Message: "could not serialize access"}

// Two transactions lock two rows in opposite order: the database kills one
// of them (PostgreSQL 40P01, MySQL/MariaDB 1213). RetryTransaction runs the
// victim again, and both commit.
func TestRetryTransactionDeadlock(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite has one writer at a time: transactions queue, they cannot deadlock")
		}
		e.reset(t, &Tag{})
		require.NoError(t, e.other.Create(&[]Tag{{Name: "a"}, {Name: "b"}}).Error)

		// Both hold their first lock before either asks for its second, on
		// the first attempt only: the deadlock is certain, the retry free.
		var holding sync.WaitGroup
		holding.Add(2)
		var runs [2]atomic.Int64
		errs := make([]error, 2)
		release(2, func(i int) {
			first, second, note := "a", "b", fmt.Sprint(i)
			if i == 1 {
				first, second = second, first
			}
			errs[i] = safefind.RetryTransaction(e.db, func(tx *gorm.DB) error {
				attempt := runs[i].Add(1)
				if err := tx.Model(&Tag{}).Where("name = ?", first).Update("note", note).Error; err != nil {
					return err
				}
				if attempt == 1 {
					holding.Done()
					holding.Wait()
				}
				return tx.Model(&Tag{}).Where("name = ?", second).Update("note", note).Error
			}, safefind.RetryBackoff(time.Millisecond, 10*time.Millisecond))
		})
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		assert.Equal(t, int64(3), runs[0].Load()+runs[1].Load(), "exactly one victim, run twice")
		var notes []string
		require.NoError(t, e.other.Model(&Tag{}).Order("name").Pluck("note", &notes).Error)
		require.Len(t, notes, 2)
		assert.Equal(t, notes[0], notes[1], "the transaction that committed last wrote both rows")
	})
}

// Under REPEATABLE READ, a row another transaction committed after the
// snapshot: on PostgreSQL FindOrCreate returns ErrStaleSnapshot and
// CreateOrFind the server's 40001, and the second attempt, on a new
// snapshot, finds the row. On MySQL/MariaDB the locking read finds it on
// the first attempt.
func TestRetryTransactionRepeatableRead(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite transactions hold the write lock from BEGIN: no other writer commits meanwhile")
		}
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				e.reset(t, &Tag{})
				var winner, got Tag
				var created bool
				attempts := 0
				err := safefind.RetryTransaction(e.db, func(tx *gorm.DB) error {
					attempts++
					require.NoError(t, tx.Find(&[]Tag{}).Error) // the snapshot
					if attempts == 1 {
						winner = Tag{Name: "rr", Note: "winner"}
						require.NoError(t, e.other.Create(&winner).Error)
					}
					got = Tag{}
					var err error
					created, err = o.fn(tx, &got, Tag{Name: "rr"})
					return err
				}, safefind.RetryTxOptions(&sql.TxOptions{Isolation: sql.LevelRepeatableRead}))
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, winner, got)
				want := map[string]int{"postgres": 2, "mysql": 1}[e.name]
				assert.Equal(t, want, attempts)
				assert.Equal(t, int64(1), e.count(t, &Tag{}))
			})
		}
	})
}

// What RetryTransaction does with each kind of outcome, on real
// transactions: every failed attempt is rolled back, a non-retryable error
// stops at once, the attempts are bounded, and the context is honoured.
func TestRetryTransactionOutcomes(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		fast := safefind.RetryBackoff(time.Microsecond, time.Millisecond)
		insertThen := func(name string, fail func(attempt int) error) (attempts int, err error) {
			err = safefind.RetryTransaction(e.db, func(tx *gorm.DB) error {
				attempts++
				if err := tx.Create(&Tag{Name: name}).Error; err != nil {
					return err
				}
				return fail(attempts)
			}, fast, safefind.RetryAttempts(3))
			return attempts, err
		}

		t.Run("succeeds after retryable failures", func(t *testing.T) {
			attempts, err := insertThen("third", func(n int) error {
				if n < 3 {
					return errSerialization
				}
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, 3, attempts)
			assert.Equal(t, int64(1), e.count(t, &Tag{}, "name = ?", "third"), "the failed attempts were rolled back")
		})

		t.Run("gives up after the last attempt", func(t *testing.T) {
			attempts, err := insertThen("never", func(int) error { return errSerialization })
			assert.Equal(t, 3, attempts)
			var re *safefind.RetryError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, 3, re.Attempts)
			assert.ErrorIs(t, err, errSerialization)
			assert.Contains(t, err.Error(), "3 attempt")
			assert.Zero(t, e.count(t, &Tag{}, "name = ?", "never"))
		})

		t.Run("stops at a non-retryable error", func(t *testing.T) {
			bad := errors.New("bad input")
			attempts, err := insertThen("bad", func(int) error { return bad })
			assert.Equal(t, 1, attempts)
			assert.ErrorIs(t, err, bad)
			var re *safefind.RetryError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, 1, re.Attempts)
			assert.Zero(t, e.count(t, &Tag{}, "name = ?", "bad"))
		})

		t.Run("a deadline nearer than the backoff ends the retries at once", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			attempts := 0
			start := time.Now()
			err := safefind.RetryTransaction(e.db.WithContext(ctx), func(tx *gorm.DB) error {
				attempts++
				return errSerialization
			}, safefind.RetryBackoff(time.Hour, time.Hour))
			assert.Less(t, time.Since(start), 30*time.Second, "did not wait for the backoff")
			assert.Equal(t, 1, attempts)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.ErrorIs(t, err, errSerialization)
		})

		t.Run("cancellation during the backoff", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			attempts := 0
			err := safefind.RetryTransaction(e.db.WithContext(ctx), func(tx *gorm.DB) error {
				attempts++
				cancel() // before the backoff starts
				return errSerialization
			}, safefind.RetryBackoff(time.Hour, time.Hour))
			assert.Equal(t, 1, attempts)
			assert.ErrorIs(t, err, context.Canceled)
			assert.ErrorIs(t, err, errSerialization)
		})

		t.Run("a cancelled context runs nothing", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			ran := false
			err := safefind.RetryTransaction(e.db.WithContext(ctx), func(*gorm.DB) error { ran = true; return nil })
			assert.False(t, ran)
			assert.ErrorIs(t, err, context.Canceled)
		})

		t.Run("refuses to run inside a transaction", func(t *testing.T) {
			err := e.db.Transaction(func(tx *gorm.DB) error {
				return safefind.RetryTransaction(tx, func(*gorm.DB) error { return nil })
			})
			assert.ErrorIs(t, err, safefind.ErrInTransaction)
		})
	})
}
