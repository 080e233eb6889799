package safefind

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The batch upsert of the dialects whose upsert names no conflict target
// (ON DUPLICATE KEY UPDATE): marked, guarded, with RETURNING or without.

// sendMarked sends the marked upsert (upsertMarked): see MarkMet.
func (b *batch) sendMarked(rowsPtr reflect.Value, groups []*group) (reflect.Value, error) {
	mark, flag, err := b.marked(false)
	if err != nil {
		return reflect.Value{}, err
	}
	exec, err := b.render(rowsPtr, func(db *gorm.DB) *gorm.DB {
		db.Statement.BuildClauses = []string{"INSERT", "VALUES", "ON CONFLICT"}
		return db.Clauses(mark)
	})
	if err != nil {
		return reflect.Value{}, err
	}
	return b.sendFlagged(func() *gorm.DB {
		db := exec()
		db.Statement.SQL.WriteString(" RETURNING *, ")
		flag.Build(db.Statement)
		return db
	}, groups, flagColumn)
}

// marked returns the ON DUPLICATE KEY UPDATE of the marked upsert, and the
// expression of its flag (with list, of its list of marks: MarkMetList):
// the mark first, then UpdatedAt where an update
// column changes (assignments see the columns set before them), then the
// update columns, each where the guard holds: the row met has the key and
// the chain's equalities.
func (b *batch) marked(list bool) (clause.OnConflict, clause.Expr, error) {
	c := b.c
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return clause.OnConflict{}, clause.Expr{}, err
	}
	values := func(col string) clause.Expr {
		return clause.Expr{SQL: "VALUES(?)", Vars: []any{clause.Column{Name: col}}}
	}
	var guards []clause.Expression
	for _, f := range b.keys {
		guards = append(guards, clause.Expr{SQL: "? <=> ?", Vars: []any{clause.Column{Name: f.DBName}, values(f.DBName)}})
	}
	for _, e := range c.eqs {
		guards = append(guards, clause.Expr{SQL: "? <=> ?", Vars: []any{clause.Column{Name: e.field.DBName}, e.value}})
	}
	for _, col := range b.live {
		guards = append(guards, clause.Expr{SQL: "? IS NULL", Vars: []any{clause.Column{Name: col}}})
	}
	guard := allOf(guards...)
	row := c.schema.PrimaryFieldDBNames
	if len(row) == 0 {
		row = make([]string, len(b.keys))
		for i, f := range b.keys {
			row[i] = f.DBName
		}
	}
	markMet := c.d.MarkMet
	if list {
		markMet = c.d.MarkMetList
	}
	// The mark writes back the key's first column: see MarkMet.
	mark, flag, _ := markMet(hex.EncodeToString(nonce), guard, b.keys[0].DBName, row)
	set := []clause.Assignment{mark}
	if len(b.update) > 0 {
		differs := make([]clause.Expression, len(b.update))
		for i, col := range b.update {
			differs[i] = c.d.Differs(clause.Column{Name: col}, values(col), b.dataType(col))
		}
		changed := allOf(guard, anyOf(differs))
		for _, col := range b.touch {
			set = append(set, clause.Assignment{Column: clause.Column{Name: col},
				Value: clause.Expr{SQL: "IF(?, ?, ?)", Vars: []any{changed, values(col), clause.Column{Name: col}}}})
		}
	}
	for _, col := range b.update {
		set = append(set, clause.Assignment{Column: clause.Column{Name: col},
			Value: clause.Expr{SQL: "IF(?, ?, ?)", Vars: []any{guard, values(col), clause.Column{Name: col}}}})
	}
	return clause.OnConflict{DoUpdates: set}, flag, nil
}

// metOther is the error of an upsert that met a row the guard kept as it
// was: one met by another unique key than the batch's, or by the primary
// key (a statement that names its conflict target would have failed on
// it), or a row with the key that the lookup cannot find (soft-deleted, or
// outside the chain's equalities).
func (b *batch) metOther() error {
	names := make([]string, len(b.keys))
	for i, f := range b.keys {
		names[i] = f.DBName
	}
	return fmt.Errorf("%w: %s: a row met an existing row that it may not update, which was left as it was: "+
		"one with another unique key than (%s) or the primary key, or one the lookup cannot find (soft-deleted, or outside the chain's conditions)",
		ErrConflictNotFound, b.c.table, strings.Join(names, ", "))
}

// sendListed is the marked upsert where the server has no RETURNING
// (upsertListed), inside a transaction: the statement, whose marks collect
// in the session (MarkMetList), then a locking read of the rows by key with
// each row's flag. Every row the statement inserted or met stays locked
// until the transaction ends, so the read finds them as the statement left
// them: a row not marked met is one the statement inserted.
func (b *batch) sendListed(rowsPtr reflect.Value, groups []*group) (reflect.Value, error) {
	c := b.c
	onConflict, flag, err := b.marked(true)
	if err != nil {
		return reflect.Value{}, err
	}
	exec, err := b.render(rowsPtr, func(db *gorm.DB) *gorm.DB {
		db.Statement.BuildClauses = []string{"INSERT", "VALUES", "ON CONFLICT"}
		return db.Clauses(onConflict)
	})
	if err != nil {
		return reflect.Value{}, err
	}
	db := exec()
	if err := db.Callback().Raw().Execute(db).Error; err != nil || c.tx.DryRun {
		return reflect.Value{}, err
	}
	return b.sendFlagged(func() *gorm.DB {
		return c.reader(true).Model(reflect.New(b.typ).Interface()).Where(b.keysIn(groups)).Select("*, ?", flag)
	}, groups, flagColumn)
}
