package safefind

import (
	"maps"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The end of a call that met an existing row: found by the first read, or
// created by another caller first. dest gets the row's columns, as
// FirstOrCreate's Find gives them (the fields that are not columns, such
// as associations, keep the caller's values). Without Assign that is all.
// With Assign the row is updated as FirstOrCreate updates it: Updates of
// Assign's columns with dest as the model, so that GORM's update hooks run
// (BeforeSave, BeforeUpdate, AfterUpdate, AfterSave), UpdatedAt moves, the
// associations on dest or named in Assign are saved as Updates saves them,
// and dest holds the row as updated. The UPDATE is chosen by the primary key
// and the lookup's conditions, inline ones included (FirstOrCreate's leaves
// those out): a row that left the lookup meanwhile is not updated.

// settle ends a call that found row (a pointer to a new value). It reports
// false, leaving dest as it was, when the row was deleted before its
// update: the caller then creates it.
func (c *call) settle(pl plan, row reflect.Value) (exists bool, err error) {
	if pl.existing != existingUpdated {
		c.setColumns(row)
		return true, nil
	}
	prepared := reflect.New(c.dest.Type().Elem())
	prepared.Elem().Set(c.dest.Elem())
	restore := func() { c.dest.Elem().Set(prepared.Elem()) }
	for tries := 0; ; tries++ {
		c.setColumns(row)
		r := c.updateDB().Model(c.dest.Interface()).Updates(maps.Clone(c.updates)) // a hook's SetColumn writes into the map
		if r.Error != nil {
			restore()
			return false, r.Error
		}
		if r.RowsAffected > 0 || c.tx.DryRun {
			return true, nil
		}
		// Deleted meanwhile; or re-created under another key; or (MySQL and
		// MariaDB count only the rows that changed) already holding the
		// assigned values: a read tells which.
		again, found, err := c.find(true)
		if err != nil || !found || tries >= c.p.cfg.retries {
			restore()
			return false, err
		}
		if c.samePrimaryKey(again, row) {
			return true, nil
		}
		c.record(EventRetry, 1)
		row = again
	}
}

// updateDB returns the statement for Assign's UPDATE: the lookup (the chain
// and the inline conditions), on the primary, with GORM's default
// transaction where the UPDATE does more than one statement's work (update
// hooks, associations).
func (c *call) updateDB() *gorm.DB {
	one := !hasUpdateHooks(c.schema) && !c.carriesAssociations(c.dest.Elem(), c.tx.Statement.Omits) && !c.updatesAssociations()
	return onPrimary(c.lookup()).Session(&gorm.Session{SkipDefaultTransaction: c.tx.SkipDefaultTransaction || one})
}

// updatesAssociations reports whether Assign names an association (a map
// key), which Updates saves.
func (c *call) updatesAssociations() bool {
	for k := range c.updates {
		if f := c.schema.LookUpField(k); f != nil && f.DBName == "" {
			return true
		}
	}
	return false
}

// setColumns gives dest the columns of row and the associations the
// lookup preloaded, as a Find into dest would: the other fields keep their
// values.
func (c *call) setColumns(row reflect.Value) {
	ctx := c.tx.Statement.Context
	dest, from := c.dest.Elem(), row.Elem()
	for _, f := range c.schema.Fields {
		if f.DBName != "" && f.Readable {
			f.ReflectValueOf(ctx, dest).Set(f.ReflectValueOf(ctx, from))
		}
	}
	preloads := c.tx.Statement.Preloads // the lookup's
	if len(preloads) == 0 {
		return
	}
	_, all := preloads[clause.Associations]
	for name, rel := range c.schema.Relationships.Relations {
		if all || preloaded(preloads, name) {
			rel.Field.ReflectValueOf(ctx, dest).Set(rel.Field.ReflectValueOf(ctx, from))
		}
	}
}

// preloaded reports whether preloads name the relation, or one below it
// ("Pets.Toys").
func preloaded(preloads map[string][]any, name string) bool {
	for p := range preloads {
		if p == name || strings.HasPrefix(p, name+".") {
			return true
		}
	}
	return false
}

// samePrimaryKey reports whether the rows behind a and b have the same
// primary key.
func (c *call) samePrimaryKey(a, b reflect.Value) bool {
	ctx := c.tx.Statement.Context
	for _, f := range c.schema.PrimaryFields {
		x, _ := f.ValueOf(ctx, a.Elem())
		y, _ := f.ValueOf(ctx, b.Elem())
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return len(c.schema.PrimaryFields) > 0
}
