package safefind

import (
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/schema"
)

func hasCreateHooks(s *schema.Schema) bool {
	return s.BeforeCreate || s.BeforeSave || s.AfterCreate || s.AfterSave
}

// skipped is the Create callback that keeps GORM from running AfterCreate and
// AfterSave hooks for a row that safefind's INSERT skipped on a conflict.
func skipped(db *gorm.DB) {
	if c := callOf(db); c != nil && db.Error == nil && db.RowsAffected == 0 {
		db.Statement.SkipHooks = true
	}
}

type hookKind int

const (
	beforeCreate hookKind = iota
	afterCreate
)

// callHooks runs the model's create hooks on every row of rows (a slice
// behind rowsPtr), in GORM's order. As GORM does, each hook gets a DB whose
// statement holds the rows and the index of the current one, so that
// tx.Statement.SetColumn works; the statement is the hooks' own, never the
// caller's.
func (b *batch) callHooks(rowsPtr reflect.Value, kind hookKind) error {
	own := b.c.tx.Session(&gorm.Session{NewDB: true}).Clauses()
	st := own.Statement
	st.Schema, st.Table = b.c.schema, b.c.table
	st.Model, st.Dest, st.ReflectValue = rowsPtr.Interface(), rowsPtr.Interface(), rowsPtr.Elem()
	db := own.Session(&gorm.Session{NewDB: true})
	rows := rowsPtr.Elem()
	for i := range rows.Len() {
		st.CurDestIndex = i
		v := rows.Index(i).Addr().Interface()
		var err error
		switch kind {
		case beforeCreate:
			if h, ok := v.(callbacks.BeforeSaveInterface); ok {
				err = h.BeforeSave(db)
			}
			if h, ok := v.(callbacks.BeforeCreateInterface); ok && err == nil {
				err = h.BeforeCreate(db)
			}
		case afterCreate:
			if h, ok := v.(callbacks.AfterCreateInterface); ok {
				err = h.AfterCreate(db)
			}
			if h, ok := v.(callbacks.AfterSaveInterface); ok && err == nil {
				err = h.AfterSave(db)
			}
		}
		if err == nil {
			err = db.Error
		}
		if err != nil {
			return err
		}
	}
	return own.Error
}
