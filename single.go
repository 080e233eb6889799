package safefind

import (
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
)

// createOrRead is the end of both paths: insert (inside a savepoint where
// needed), and on a conflict read the winner's row. A conflict whose row
// cannot be read is tried again, WithRetries times.
//
// On an error dest is left as the caller prepared it.
func (c *call) createOrRead(skip bool) (created bool, err error) {
	prepared := reflect.New(c.dest.Type().Elem()).Elem()
	prepared.Set(c.dest.Elem())
	defer func() {
		if err != nil {
			c.dest.Elem().Set(prepared)
		}
	}()
	ctx := c.tx.Statement.Context
	if err := c.assign(ctx); err != nil {
		return false, err
	}
	if !skip && c.needSavepoint() && c.overBudget() {
		// A savepoint would take the transaction past its budget: skip
		// conflicts instead. The transaction now depends on this INSERT
		// succeeding or conflicting, as with CreateOrFind.
		skip = true
		c.record(EventBudgetSwitch, 1)
	}
	busy := 0 // statement retries outside a transaction
	for attempt := 0; ; attempt++ {
		var dup error
		if !skip && c.needSavepoint() {
			created, dup, err = c.inSavepoint(func() (bool, error, error) { return c.insert(false) })
		} else {
			created, dup, err = c.insert(skip)
		}
		if dup != nil || err == nil && !created {
			c.record(EventConflict, 1)
		}
		if err != nil && !c.inTx && busy < maxStatementRetries && c.d.RetryStatement(err) && ctx.Err() == nil {
			// Outside a transaction a lost deadlock or a Galera
			// certification failure costs only this statement: try it
			// again.
			busy++
			attempt--
			c.record(EventRetry, 1)
			continue
		}
		if err != nil {
			return false, err
		}
		if created {
			c.record(EventCreated, 1)
			return true, nil
		}
		if c.tx.DryRun {
			_, err := c.read(true)
			return false, err
		}
		found, err := c.read(true)
		if err != nil {
			return false, err
		}
		if found {
			c.record(EventFound, 1)
			return false, nil
		}
		if err := c.staleSnapshot(); err != nil {
			return false, err
		}
		if attempt >= c.p.cfg.retries {
			if dup != nil {
				if !errors.Is(dup, gorm.ErrDuplicatedKey) {
					dup = fmt.Errorf("%w: %w", gorm.ErrDuplicatedKey, dup)
				}
				return false, fmt.Errorf("%w (table %s, %d attempts): %w", ErrConflictNotFound, c.table, attempt+1, dup)
			}
			return false, fmt.Errorf("%w (table %s, %d attempts)", ErrConflictNotFound, c.table, attempt+1)
		}
		c.record(EventRetry, 1)
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}
