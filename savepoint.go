package safefind

import (
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Savepoints. On PostgreSQL every savepoint is a subtransaction, and past 64
// of them in one transaction every reader of the database pays for it. So
// safefind opens one only where an INSERT may fail inside a transaction on a
// dialect where a failed statement aborts the whole transaction, or saves
// associations inside a transaction (on every dialect: what was saved
// before a failed INSERT must be rolled back with it), and it
// issues the statements itself, checking each error: GORM's dialectors
// discard the errors of SavePoint and RollbackTo, and GORM never releases a
// savepoint, leaving every later statement of the transaction one level
// deeper.

// savepointName is the name of the savepoint around safefind's INSERT. Calls
// on one transaction are sequential, so one name is enough; PostgreSQL would
// stack equal names anyway.
const savepointName = "safefind_insert"

// needSavepoint reports whether an INSERT that may fail on a unique conflict
// must run inside a savepoint to keep the caller's transaction usable.
func (c *call) needSavepoint() bool {
	return c.inTx && c.d.FailedStatementAbortsTx()
}

// inSavepoint runs insert inside a savepoint. The savepoint is released when
// insert succeeds, and rolled back and released when it meets a conflict or
// fails, so that the caller's transaction stays usable and no savepoint
// outlives the call. An error of the savepoint statements is returned as err,
// joined with the conflict or failure it was cleaning up after.
func (c *call) inSavepoint(insert func() (created bool, dup, err error)) (created bool, dup, err error) {
	db := c.tx.Session(&gorm.Session{NewDB: true})
	start := time.Now()
	err = db.Exec("SAVEPOINT " + savepointName).Error
	c.savepointEvent(EventSavepoint, start, err)
	if err != nil {
		return false, nil, fmt.Errorf("safefind: open savepoint: %w", err)
	}
	created, dup, err = insert()
	if err == nil && dup == nil {
		start = time.Now()
		err := db.Exec("RELEASE SAVEPOINT " + savepointName).Error
		c.savepointEvent(EventSavepointReleased, start, err)
		if err != nil {
			return false, nil, fmt.Errorf("safefind: release savepoint: %w", err)
		}
		return created, nil, nil
	}
	start = time.Now()
	rerr := rollbackSavepoint(db, c.d.BatchesStatements())
	c.savepointEvent(EventSavepointRolledBack, start, rerr)
	if rerr != nil {
		return false, dup, errors.Join(dup, err, fmt.Errorf("safefind: roll back savepoint: %w", rerr))
	}
	return false, dup, err
}

// rollbackSavepoint rolls back to the savepoint and releases it: in one
// round trip where the dialect batches statements (PostgreSQL, whose every
// savepoint is one FindOrCreate may need) and prepared statements are off,
// since a prepared statement may hold only one.
func rollbackSavepoint(db *gorm.DB, batches bool) error {
	const rollback = "ROLLBACK TO SAVEPOINT " + savepointName
	const release = "RELEASE SAVEPOINT " + savepointName
	if batches && !db.PrepareStmt {
		return db.Exec(rollback + "; " + release).Error
	}
	if err := db.Exec(rollback).Error; err != nil {
		return err
	}
	return db.Exec(release).Error
}
