package safefind

import (
	"maps"
	"reflect"

	"gorm.io/gorm"
)

// The end of a call that met an existing row: found by the first read, or
// created by another caller first. Without Assign the row is returned as it
// is. With Assign it is updated with Assign's columns as FirstOrCreate
// updates it: Updates on the caller's chain with the row as the model, so
// that GORM's update hooks run (BeforeSave, BeforeUpdate, AfterUpdate,
// AfterSave), UpdatedAt moves, the row is chosen by its primary key and the
// chain's conditions, and dest holds the row as updated.

// settle ends a call that found row (a pointer to a new value): dest gets
// the row, updated as the plan says. It reports false, leaving dest as it
// was, when the row was deleted before its update: the caller then creates
// it.
func (c *call) settle(pl plan, row reflect.Value) (exists bool, err error) {
	if pl.existing == existingUpdated {
		// One UPDATE is atomic by itself: GORM's default transaction only
		// serves update hooks. A map of its own: a hook's SetColumn writes
		// into it.
		s := &gorm.Session{SkipDefaultTransaction: c.tx.SkipDefaultTransaction || !hasUpdateHooks(c.schema)}
		r := c.tx.Session(s).Model(row.Interface()).Updates(maps.Clone(c.updates))
		if r.Error != nil {
			return false, r.Error
		}
		if r.RowsAffected == 0 && !c.tx.DryRun {
			// Deleted meanwhile, or (MySQL/MariaDB count only the rows
			// that changed) already holding the assigned values: a read
			// tells which.
			var found bool
			if row, found, err = c.find(true); err != nil || !found {
				return false, err
			}
		}
	}
	c.dest.Elem().Set(row.Elem())
	return true, nil
}
