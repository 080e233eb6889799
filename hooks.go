package safefind

import (
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// Hooks. A model's create hooks run as GORM's Create runs them, by GORM's
// own code: the single-row INSERT goes through Create itself, with
// skipped keeping the after-hooks from a row the INSERT skipped; a batch,
// whose INSERT safefind sends itself, runs GORM's hook callbacks
// (callbacks.BeforeCreate, callbacks.AfterCreate) on the rows.

func hasCreateHooks(s *schema.Schema) bool {
	return s.BeforeCreate || s.BeforeSave || s.AfterCreate || s.AfterSave
}

func hasUpdateHooks(s *schema.Schema) bool {
	return s.BeforeUpdate || s.BeforeSave || s.AfterUpdate || s.AfterSave
}

// skipped is the Create callback that keeps GORM from running AfterCreate and
// AfterSave hooks for a row that safefind's INSERT skipped on a conflict.
// It acts on the call's INSERT of the call's own row only: a statement that
// a hook clones from the INSERT carries the marker too (see marker.go).
// A row saved with associations fails instead (errSkippedRow): its scope
// then rolls back what was saved before it (associations.go). It also notes
// the INSERT's own error, which tells a conflict of the row from one of its
// associations' (insert.go).
func skipped(db *gorm.DB) {
	c := ownInsert(db)
	if c == nil {
		return
	}
	c.insertErr = db.Error
	if db.Error != nil || db.RowsAffected > 0 {
		return
	}
	if c.writing.associations {
		db.AddError(errSkippedRow)
		return
	}
	db.Statement.SkipHooks = true
}

// inserting is the Create callback just before gorm:create: it notes
// whether the call's INSERT is sent (nothing before it, a belongs-to
// association's save, failed).
func inserting(db *gorm.DB) {
	if c := ownInsert(db); c != nil {
		c.insertSent = db.Error == nil
	}
}

// ownInsert returns the call whose INSERT of its own row db is: marked, and
// of the call's dest (a statement that a hook clones from the INSERT carries
// the marker too, see marker.go).
func ownInsert(db *gorm.DB) *call {
	c := callOf(db)
	if c == nil || !c.dest.IsValid() || db.Statement.Dest != c.dest.Interface() {
		return nil
	}
	return c
}

// runHooks runs hook, one of GORM's create-hook callbacks, on every row of
// rowsPtr (a pointer to a slice of the model), as GORM's Create runs it: on
// a statement of their own that holds the rows, the current index and the
// caller's settings, so that tx.Statement.SetColumn and tx.Get work, and
// never on the caller's statement. It returns the hooks' error.
func (c *call) runHooks(rowsPtr reflect.Value, hook func(*gorm.DB)) error {
	db := c.tableDB(&gorm.Session{})
	st := db.Statement
	st.Schema = c.schema
	st.Model, st.Dest, st.ReflectValue = rowsPtr.Interface(), rowsPtr.Interface(), rowsPtr.Elem()
	hook(db)
	return db.Error
}
