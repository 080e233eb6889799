package safefind

import (
	"fmt"

	"gorm.io/gorm"
)

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

// maxStatementRetries bounds the retries of a statement that failed with a
// retryable error outside a transaction.
const maxStatementRetries = 5
