package safefind

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"gorm.io/gorm"
)

// Retrying transactions. A serialization failure, a deadlock or a busy
// database ends or dooms the whole transaction: the database rolled it back,
// or will refuse to commit it. Retrying the failed statement inside it cannot
// help; running the whole transaction again can, and usually succeeds at once.

// ErrInTransaction: [RetryTransaction] was given a *gorm.DB that is already
// inside a transaction. The failures it retries end the outer transaction,
// so only the code that began it can run it again.
var ErrInTransaction = errors.New("safefind: RetryTransaction needs a *gorm.DB outside any transaction")

// RetryError is the error [RetryTransaction] returns when the transaction
// did not commit: the last attempt's error and how many attempts ran. It
// unwraps to that error, so errors.Is and errors.As reach the database's
// error and safefind's sentinels.
type RetryError struct {
	// Attempts is how many times the transaction ran.
	Attempts int
	// Err is the last attempt's error, joined with the context's error when
	// the context ended the retries.
	Err error
}

// Error describes the failure and the attempts.
func (e *RetryError) Error() string {
	return fmt.Sprintf("safefind: transaction failed after %d attempt(s): %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryOption configures [RetryTransaction].
type RetryOption func(*retryConfig)

type retryConfig struct {
	attempts  int
	base, max time.Duration
	txOptions *sql.TxOptions
}

// RetryAttempts sets how many times [RetryTransaction] may run the
// transaction in all (default 5). Values below 1 mean 1. (The INSERTs a
// single call tries again after a conflict are [WithConflictRetries].)
func RetryAttempts(n int) RetryOption {
	return func(c *retryConfig) { c.attempts = max(n, 1) }
}

// RetryBackoff sets the backoff between attempts: before attempt n+1 it
// waits a random duration between half and all of min(maxWait, base·2ⁿ⁻¹)
// ("equal jitter": transactions that collided do not collide again in step,
// and none retries at once). The default is 10ms and 1s. A base or maxWait
// of 0 or less means no wait.
func RetryBackoff(base, maxWait time.Duration) RetryOption {
	return func(c *retryConfig) { c.base, c.max = max(base, 0), max(maxWait, 0) }
}

// RetryTxOptions sets the options of every transaction begun, such as the
// isolation level.
func RetryTxOptions(opts *sql.TxOptions) RetryOption {
	return func(c *retryConfig) { c.txOptions = opts }
}

// RetryTransaction runs fn in a transaction on db, as db.Transaction does,
// and runs it again in a new transaction while it fails with an error for
// which [IsRetryable] is true: a serialization failure or deadlock, a
// MySQL/MariaDB deadlock or Galera certification failure (also when COMMIT
// reports it), a busy SQLite database, [ErrStaleSnapshot]. fn must be safe to
// run more than once: everything it did in a failed attempt was rolled back,
// but what it did outside the transaction (in memory, on other systems) was
// not.
//
// Between attempts it waits a jittered, exponentially growing backoff (see
// [RetryBackoff]), and it stops early when db's context is cancelled or its
// deadline would pass before the next attempt. It returns nil once a
// transaction commits; otherwise a [*RetryError] holding the last error and
// the number of attempts, for the first error that is not retryable, or
// after [RetryAttempts] attempts (default 5).
//
// db must not be inside a transaction ([ErrInTransaction]): a deadlock or
// serialization failure ends the outer transaction, which only its owner can
// retry. The plugin need not be registered.
func RetryTransaction(db *gorm.DB, fn func(tx *gorm.DB) error, opts ...RetryOption) error {
	if db == nil || db.Config == nil || db.Statement == nil {
		return fmt.Errorf("%w (nil *gorm.DB)", ErrNotRegistered)
	}
	if fn == nil {
		return errors.New("safefind: RetryTransaction needs a function to run")
	}
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); ok {
		return ErrInTransaction
	}
	cfg := retryConfig{attempts: 5, base: 10 * time.Millisecond, max: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	var txOpts []*sql.TxOptions
	if cfg.txOptions != nil {
		txOpts = append(txOpts, cfg.txOptions)
	}
	ctx := db.Statement.Context
	for attempt := 1; ; attempt++ {
		if attempt == 1 {
			if err := ctx.Err(); err != nil {
				return &RetryError{Attempts: 0, Err: err}
			}
		}
		err := db.Transaction(fn, txOpts...)
		if err == nil {
			return nil
		}
		if attempt >= cfg.attempts || !IsRetryable(err) {
			return &RetryError{Attempts: attempt, Err: err}
		}
		if werr := wait(ctx, cfg.backoff(attempt)); werr != nil {
			return &RetryError{Attempts: attempt, Err: errors.Join(err, werr)}
		}
	}
}

// backoff is the wait after the attempt'th failure: a random duration
// between half and all of min(max, base·2^(attempt-1)).
func (c retryConfig) backoff(attempt int) time.Duration {
	if c.base <= 0 || c.max <= 0 {
		return 0
	}
	ceiling := c.max
	if shift := attempt - 1; shift < 62 && c.base <= c.max>>shift {
		ceiling = c.base << shift
	}
	return ceiling/2 + rand.N(ceiling/2+1)
}

// errDeadlineTooClose: the context's deadline would pass during the backoff.
var errDeadlineTooClose = fmt.Errorf("safefind: the deadline would pass before the next attempt: %w", context.DeadlineExceeded)

// wait sleeps for d, or returns early with the context's error, or at once
// when the deadline is nearer than d.
func wait(ctx context.Context, d time.Duration) error {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return errDeadlineTooClose
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
