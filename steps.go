package safefind

import (
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The steps that the single-row and batch drivers share: the read of the
// latest rows, a statement's retry outside a transaction, and the decision
// after a conflict whose row the read did not find. Recording an outcome is
// [call.record] (observe.go).

// reader returns the lookup for a read. Without latest it is the call's
// first read, which a replica may serve. With latest it reads on the
// primary and, inside a transaction, adds the dialect's locking read unless
// the caller chose a lock, so that a row committed after the transaction's
// snapshot is seen.
func (c *call) reader(latest bool) *gorm.DB {
	q := c.routed(latest)
	if latest && c.inTx && !c.locked {
		if l := c.d.LatestRead(); l != nil {
			q = q.Clauses(l)
		}
	}
	return q
}

// maxStatementRetries bounds the retries of a statement that failed with a
// retryable error outside a transaction: with statementBackoff, about a
// second of waiting at most. (Under heavy contention on keys being deleted,
// a MariaDB batch lost 6 deadlocks in a row.)
const maxStatementRetries = 10

// statementBackoff is the wait before a statement is sent again: jittered,
// so that two statements that deadlocked on each other do not meet again
// in step (MariaDB's delete-marked records make batches on keys deleted a
// moment before deadlock however they are sorted).
var statementBackoff = retryConfig{base: 5 * time.Millisecond, max: 200 * time.Millisecond}

// retryStatement runs send, and runs it again when it fails outside a
// transaction with an error the dialect retries (a lost deadlock, a Galera
// certification failure), after a jittered wait (statementBackoff): the
// statement was then a transaction of its own,
// rolled back whole, and nothing else of the caller's is lost. *retries
// counts the retries of the statements that share a budget of
// maxStatementRetries (a single-row call's INSERTs, a batch INSERT's
// sends). Inside a transaction the error is the caller's to retry
// ([IsRetryable]); once the context is done it is returned with the
// context's error.
func (c *call) retryStatement(retries *int, send func() error) error {
	for {
		err := send()
		if err == nil || c.inTx || *retries >= maxStatementRetries || !c.d.RetryStatement(err) {
			return err
		}
		if done := c.tx.Statement.Context.Err(); done != nil {
			return errors.Join(err, done)
		}
		*retries++
		c.record(EventRetry, 1)
		if done := wait(c.tx.Statement.Context, statementBackoff.backoff(*retries)); done != nil {
			return errors.Join(err, done)
		}
	}
}

// unresolvedConflict is the step after a conflict whose row the read did
// not find, on the attempt-th INSERT (from 0). A transaction whose snapshot
// hides rows committed after it began cannot see the row: ErrStaleSnapshot.
// Otherwise the row was deleted in between, or the conflict is on a key the
// lookup does not cover, and the INSERT may run again (again) while
// [WithConflictRetries] allows.
func (c *call) unresolvedConflict(attempt int) (again bool, err error) {
	if err := c.staleSnapshot(); err != nil {
		return false, err
	}
	return attempt < c.p.cfg.retries, nil
}

// staleSnapshot returns ErrStaleSnapshot when the caller's transaction reads
// from a snapshot that can hide a row committed after it began: the reason,
// on PostgreSQL, that a conflict's row cannot be read.
func (c *call) staleSnapshot() error {
	if !c.inTx {
		return nil
	}
	hidden, err := c.d.SnapshotHidesCommitted(c.tx.Session(&gorm.Session{NewDB: true}))
	if err != nil {
		return err
	}
	if hidden {
		return fmt.Errorf("%w (table %s)", ErrStaleSnapshot, c.table)
	}
	return nil
}
