package safefind

import (
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// writeOne is the single-row driver, the end of FindOrCreate and
// CreateOrFind: insert dest as pl says, and on a conflict read the winner's
// row. A conflict whose row cannot be read is tried again, [WithConflictRetries]
// times.
//
// On an error dest is left as the caller prepared it.
func (c *call) writeOne(pl plan) (created bool, err error) {
	prepared := reflect.New(c.dest.Type().Elem()).Elem()
	prepared.Set(c.dest.Elem())
	var zeroKeys []reflect.Value // of the row and its associations (associations.go)
	defer func() {
		if err != nil {
			c.dest.Elem().Set(prepared)
			unset(zeroKeys)
		}
	}()
	ctx := c.tx.Statement.Context
	if err := c.assign(ctx); err != nil {
		return false, err
	}
	if err := c.setRequest(ctx); err != nil {
		return false, err
	}
	if pl.associations {
		zeroKeys = c.zeroKeys()
	}
	c.writing = pl
	if pl.budgetSwitch {
		// The transaction now depends on this INSERT succeeding or
		// conflicting, as with CreateOrFind.
		c.record(EventBudgetSwitch, 1)
	}
	oneStatement := c.selectsAfterInsert(pl) // insert_select.go
	retries := 0                             // of the statement, outside a transaction, over all attempts
	for attempt := 0; ; attempt++ {
		var (
			dup     error
			updated bool          // by the upsert
			read    reflect.Value // by the one statement
		)
		err = c.retryStatement(&retries, func() error {
			unset(zeroKeys) // a rolled back attempt leaves them set
			var err error
			switch {
			case pl.conflict == conflictUpdates:
				created, updated, dup, err = c.upsert()
			case oneStatement:
				read, created, err = c.insertOrRead()
			default:
				created, dup, err = c.insertInScope(pl)
			}
			return err
		})
		if !created {
			unset(zeroKeys) // nothing of theirs was kept
		}
		if dup != nil || err == nil && !created {
			c.record(EventConflict, 1)
		}
		if err != nil {
			return false, err
		}
		if created && read.IsValid() {
			c.setColumns(read) // as Create's RETURNING * sets them
		}
		if created {
			c.record(EventCreated, 1)
			return true, nil
		}
		if updated {
			c.record(EventFound, 1)
			return false, nil
		}
		var (
			row   reflect.Value
			found bool
		)
		switch {
		case !oneStatement:
			row, found, err = c.find(true)
		case read.IsValid():
			row, found = read, true
		}
		if err != nil || c.tx.DryRun {
			return false, err
		}
		if found {
			// As on a hit: the caller's dest, not the row it tried to
			// create (Assign's associations are saved with a created row
			// only).
			c.dest.Elem().Set(prepared)
			if found, err = c.settle(pl, row); err != nil {
				return false, err
			}
			if !found {
				// Deleted before its update: create it again.
				if err := c.assign(ctx); err != nil {
					return false, err
				}
				if err := c.setRequest(ctx); err != nil {
					return false, err
				}
			}
		}
		if found {
			c.record(EventFound, 1)
			return false, nil
		}
		cause := c.conflictCause()
		again, err := c.unresolvedConflict(attempt)
		if err != nil {
			return false, err
		}
		if !again || cause != "" { // a cause in the row itself holds on every attempt
			return false, conflictNotFound(c.table, attempt+1, cause, dup)
		}
		c.record(EventRetry, 1)
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}

// insertInScope runs the INSERT in the plan's scope: a savepoint, or a
// transaction of safefind's own for a row with associations (GORM's default
// transaction, which serves create hooks, can be turned off; the
// associations' atomicity cannot). A conflict rolls either back.
func (c *call) insertInScope(pl plan) (created bool, dup, err error) {
	switch {
	case pl.scope == scopeSavepoint:
		return c.inSavepoint(func() (bool, error, error) { return c.insert(pl) })
	case pl.scope == scopeTransaction && pl.associations:
		err = c.tx.Transaction(func(t *gorm.DB) error {
			in := *c
			in.tx, in.inTx = t, true
			var ierr error
			created, dup, ierr = in.insert(pl)
			return errors.Join(dup, ierr)
		})
		if dup != nil {
			return false, dup, nil
		}
		return created, nil, err
	}
	return c.insert(pl)
}

// conflictNotFound is ErrConflictNotFound after attempts INSERTs, with the
// conflict's likely cause (conflictCause; the usual ones if it is unknown),
// wrapping the last one's duplicate-key error, if it had one, which names
// the key the database reported, as gorm.ErrDuplicatedKey too.
func conflictNotFound(table string, attempts int, cause string, dup error) error {
	if cause == "" {
		cause = "a unique key the lookup does not cover (another unique column, a soft-deleted row), or a row deleted as fast as it is created"
	}
	if dup == nil {
		return fmt.Errorf("%w (table %s, %d attempts): likely %s", ErrConflictNotFound, table, attempts, cause)
	}
	if !errors.Is(dup, gorm.ErrDuplicatedKey) {
		dup = fmt.Errorf("%w: %w", gorm.ErrDuplicatedKey, dup)
	}
	return fmt.Errorf("%w (table %s, %d attempts): likely %s: %w", ErrConflictNotFound, table, attempts, cause, dup)
}

// conflictCause is the likely cause of a conflict that no row of the lookup
// explains, read off the row the INSERT tried (dest, as Create left it): a
// lookup column that a hook or a default changed, so that the INSERT
// conflicted on a key the lookup does not find; or a primary key the row
// carried beyond the lookup's, which another row holds (one left on dest by
// an earlier call). Either holds on every attempt. "" when the row shows
// neither.
func (c *call) conflictCause() string {
	ctx := c.tx.Statement.Context
	row := c.dest.Elem()
	for _, e := range c.eqs {
		if v, _ := e.field.ValueOf(ctx, row); !storedAsGiven(v, e.value) {
			return fmt.Sprintf("the row to create had %s = %v, not the lookup's %v (a BeforeCreate hook changed it?)", e.field.DBName, v, e.value)
		}
	}
	if pk := c.schema.PrioritizedPrimaryField; pk != nil && !c.looksUp(pk) {
		if v, zero := pk.ValueOf(ctx, row); !zero {
			return fmt.Sprintf("the row to create carried %s = %v, which another row holds (a primary key left on dest by an earlier call? zero it)", pk.DBName, v)
		}
	}
	return ""
}

// looksUp reports whether the lookup has an equality on f.
func (c *call) looksUp(f *schema.Field) bool {
	for _, e := range c.eqs {
		if e.field == f {
			return true
		}
	}
	return false
}
