package safefind

import (
	"fmt"
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// The columns a batch upsert gives a row that exists: UpsertAll's update
// columns, or the chain's Assign on a batch call. Every name is checked
// against the model before anything is sent: names end up in SQL.

// resolveUpdate sets b.update, the columns an existing row gets, from
// UpsertAll's names (none: the default), and b.touch, the columns of
// UpdatedAt, moved only when an update column changes.
func (b *batch) resolveUpdate(names []string) error {
	s := b.c.schema
	if len(names) == 0 {
		writes := b.c.inserts()
		for _, f := range s.Fields {
			if f.DBName == "" || !f.Creatable || !f.Updatable || f.PrimaryKey || f.AutoCreateTime > 0 ||
				b.isKey(f) || b.isEquality(f) || !writes(f) || f.FieldType == reflect.TypeFor[gorm.DeletedAt]() {
				continue
			}
			b.addUpdate(f)
		}
		b.addTouch()
		return nil
	}
	writes := b.c.inserts()
	for _, name := range names {
		f := lookUpField(s, name)
		if f == nil || f.DBName == "" {
			return fmt.Errorf("%w: update column %q", ErrUnknownColumn, name)
		}
		switch {
		case !writes(f):
			return fmt.Errorf("%w: %q is left out of the INSERT by the chain's Select or Omit, so there is no value to update it with", ErrInvalidColumns, name)
		case b.isKey(f):
			return fmt.Errorf("%w: %q is a key column; a row's key is what finds it", ErrInvalidColumns, name)
		case f.PrimaryKey:
			return fmt.Errorf("%w: %q is the primary key", ErrInvalidColumns, name)
		case !f.Creatable || !f.Updatable:
			return fmt.Errorf("%w: %q is not written on create and update (a read-only field)", ErrInvalidColumns, name)
		}
		b.addUpdate(f)
	}
	b.addTouch()
	return nil
}

// assignUpdate sets b.update and b.touch from the chain's Assign: a batch
// with Assign is an upsert of Assign's columns.
func (b *batch) assignUpdate() error {
	c := b.c
	if c.updatesAssociations() {
		return fmt.Errorf("%w: Assign names an association, which batch calls do not save", ErrInvalidAttributes)
	}
	if hasUpdateHooks(c.schema) {
		return fmt.Errorf("%w: %s has update hooks, which a batch's Assign, an upsert, would not run; use FindOrCreate row by row", ErrInvalidAttributes, c.schema.Name)
	}
	writes := c.inserts()
	for _, a := range c.assigns {
		if !a.field.Updatable || a.field.DBName == "" {
			return fmt.Errorf("%w: Assign sets %s, which GORM does not update", ErrInvalidAttributes, a.field.Name)
		}
		// A column the chain's Select or Omit leave out is neither
		// inserted nor updated, as FirstOrCreate's Create and Updates
		// leave it out.
		if !b.isEquality(a.field) && writes(a.field) {
			b.addUpdate(a.field)
		}
	}
	b.addTouch()
	return nil
}

// refuseKeyChanges refuses Attrs or Assign that set a key column: every
// row would get the same key.
func (b *batch) refuseKeyChanges() error {
	for _, list := range [][]assignment{b.c.attrs, b.c.assigns} {
		for _, a := range list {
			if b.isKey(a.field) {
				return fmt.Errorf("%w: %s is a key column of the batch; every row would get the same key", ErrInvalidAttributes, a.field.Name)
			}
		}
	}
	return nil
}

func (b *batch) addUpdate(f *schema.Field) {
	if f.AutoUpdateTime > 0 {
		if !slices.Contains(b.touch, f.DBName) {
			b.touch = append(b.touch, f.DBName)
		}
		return
	}
	if !slices.Contains(b.update, f.DBName) {
		b.update = append(b.update, f.DBName)
	}
}

// addTouch adds UpdatedAt (the fields GORM moves on update) to b.touch.
func (b *batch) addTouch() {
	if b.update == nil {
		b.update = []string{}
	}
	writes := b.c.inserts()
	for _, f := range b.c.schema.Fields {
		if f.AutoUpdateTime > 0 && f.DBName != "" && f.Updatable && !f.PrimaryKey && !b.isKey(f) &&
			writes(f) && !slices.Contains(b.touch, f.DBName) {
			b.touch = append(b.touch, f.DBName)
		}
	}
}

func (b *batch) isKey(f *schema.Field) bool { return slices.Contains(b.keys, f) }

func (b *batch) isEquality(f *schema.Field) bool {
	return slices.ContainsFunc(b.c.eqs, func(e equality) bool { return e.field == f })
}

// inserts returns whether the chain's Select and Omit let an INSERT write
// a field, as GORM's Create reads them.
func (c *call) inserts() func(*schema.Field) bool {
	st := &gorm.Statement{DB: c.tx, Schema: c.schema, Table: c.table, Selects: c.tx.Statement.Selects, Omits: c.tx.Statement.Omits}
	results, restricted := st.SelectAndOmitColumns(true, false)
	return func(f *schema.Field) bool {
		v, ok := results[f.DBName]
		if restricted {
			return v
		}
		return !ok || v
	}
}

// liveColumns returns the columns of GORM's soft delete (gorm.DeletedAt),
// NULL on a row that is not deleted, unless the chain is Unscoped: an
// upsert must not update, nor return, a deleted row, which the lookup
// cannot find. ok is false where the model has query clauses of another
// kind, which safefind cannot add to an upsert.
func (c *call) liveColumns() (cols []string, ok bool) {
	s := c.schema
	for _, f := range s.Fields {
		if f.DBName != "" && f.FieldType == reflect.TypeFor[gorm.DeletedAt]() {
			cols = append(cols, f.DBName)
		}
	}
	if len(s.QueryClauses) > len(cols) {
		return nil, false
	}
	if c.tx.Statement.Unscoped {
		return nil, true
	}
	return cols, true
}
