package safefind

import (
	"fmt"
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// Associations. A row to create that carries associations (set on dest, or
// by Attrs and Assign) has them saved as GORM's Create saves them:
// belongs-to before the row, has-one, has-many and many-to-many after it,
// with the chain's Select, Omit and FullSaveAssociations. They are saved
// when, and only when, the call creates the row, atomically with it: the
// INSERT runs in a transaction of its own (outside the caller's) or a
// savepoint (inside it, on every dialect), and a conflict rolls it back
// with everything saved before it. An INSERT that skipped its row (ON
// CONFLICT DO NOTHING) fails with errSkippedRow, a duplicate-key error, so
// that GORM saves nothing after it and the scope rolls back what it saved
// before. On a row that exists, only Assign's UPDATE saves associations, as
// FirstOrCreate's Updates does (update.go).

// errSkippedRow: the INSERT of a row with associations skipped the row (it
// exists). It is a duplicate-key error, handled as the conflict it is.
var errSkippedRow = fmt.Errorf("%w: safefind: the INSERT skipped the row, which exists; what was saved with it is rolled back", gorm.ErrDuplicatedKey)

// savesAssociations reports whether the row to create carries associations
// that Create would save: a relation set on dest or by Attrs or Assign,
// unless the chain omits it.
func (c *call) savesAssociations() bool {
	if len(c.schema.Relationships.Relations) == 0 {
		return false
	}
	omits := c.tx.Statement.Omits
	if slices.Contains(omits, clause.Associations) {
		return false
	}
	for _, list := range [][]assignment{c.attrs, c.assigns} {
		for _, a := range list {
			if rel := c.schema.Relationships.Relations[a.field.Name]; rel != nil && !slices.Contains(omits, rel.Name) {
				return true
			}
		}
	}
	return c.carriesAssociations(c.dest.Elem(), omits)
}

// carriesAssociations reports whether the struct row has a relation that
// is not zero and not among omits.
func (c *call) carriesAssociations(row reflect.Value, omits []string) bool {
	ctx := c.tx.Statement.Context
	for name, rel := range c.schema.Relationships.Relations {
		if slices.Contains(omits, name) {
			continue
		}
		if _, zero := rel.Field.ValueOf(ctx, row); !zero {
			return true
		}
	}
	return false
}

// refuseAssociations refuses a batch whose rows carry associations, which
// batches do not save yet: before anything is sent, never silently.
func (b *batch) refuseAssociations() error {
	c := b.c
	if len(c.schema.Relationships.Relations) == 0 || slices.Contains(c.tx.Statement.Omits, clause.Associations) {
		return nil
	}
	for i := range b.elems.Len() {
		if c.carriesAssociations(b.elem(i), c.tx.Statement.Omits) {
			return fmt.Errorf("%w: element %d carries associations, which batch calls do not save yet; save them after the call, or Omit(clause.Associations)", ErrInvalidAttributes, i)
		}
	}
	return nil
}

// zeroKeys returns the primary key fields of the row to create and of its
// associations (one level down) that are zero. An INSERT rolled back after
// GORM set them leaves them set, and the next attempt would insert those
// ids explicitly, or link to another caller's row that took them: they are
// zeroed again before every attempt, and after a failed call.
func (c *call) zeroKeys() []reflect.Value {
	ctx := c.tx.Statement.Context
	var out []reflect.Value
	collect := func(v reflect.Value, fields []*schema.Field) {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return
		}
		for _, f := range fields {
			if fv := f.ReflectValueOf(ctx, v); fv.CanSet() && fv.IsZero() {
				out = append(out, fv)
			}
		}
	}
	dest := c.dest.Elem()
	collect(dest, c.schema.PrimaryFields)
	for _, rel := range c.schema.Relationships.Relations {
		fv := reflect.Indirect(rel.Field.ReflectValueOf(ctx, dest))
		if fv.Kind() == reflect.Slice || fv.Kind() == reflect.Array {
			for i := range fv.Len() {
				collect(fv.Index(i), rel.FieldSchema.PrimaryFields)
			}
			continue
		}
		collect(fv, rel.FieldSchema.PrimaryFields)
	}
	return out
}

// unset zeroes the fields.
func unset(fields []reflect.Value) {
	for _, f := range fields {
		f.SetZero()
	}
}
