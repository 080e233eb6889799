package safefind

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
)

// A batch's upsert: UpsertAll, and the batch calls with Assign, insert each
// row or give the existing row with its key the update columns, and say
// which, row by row, matched by key. How a dialect says it is the batch's
// upsert style:
//
//   - upsertFlagged (PostgreSQL): one statement,
//     INSERT ... ON CONFLICT (key) DO UPDATE SET col = excluded.col, ...
//     WHERE (a column differs) AND the chain's equalities
//     RETURNING *, (xmax = 0);
//     a row left as it was is not returned: a read finds it.
//   - upsertMarked (MariaDB 10.5+): one statement,
//     INSERT ... ON DUPLICATE KEY UPDATE (MarkMet's mark), col = IF(guard,
//     VALUES(col), col), ... RETURNING *, (MarkMet's flag);
//     the guard (the row has the key and the chain's equalities) keeps a
//     row met by another unique key unchanged, and the flag tells it apart.
//   - upsertTwoStep (SQLite, a PostgreSQL partitioned table): in a
//     transaction, an INSERT that skips and locks the existing rows
//     (ON CONFLICT DO UPDATE ... WHERE false) RETURNING the rows it
//     inserted, then the upsert of the others RETURNING the rows it
//     updated.
//   - upsertListed (MySQL 8, MariaDB before 10.5: no RETURNING): in a
//     transaction, the marked statement, whose marks collect in a user
//     variable, then a locking read of the rows and of the marks.
//   - upsertReadFirst (SQLite, one writer at a time): in a transaction
//     that holds the write lock (WriteLock), a read of the rows by key,
//     then one upsert that returns the rows it inserted or changed: a row
//     returned that the read did not find is one it inserted.
//
// A row whose values are the ones given is not rewritten where the
// dialect's conflict clause has a WHERE (PostgreSQL, SQLite): no new row
// version, no UPDATE trigger, UpdatedAt unchanged. On MySQL/MariaDB such a
// row is not changed either (UpdatedAt included: it moves only with another
// column), but the server fires its UPDATE triggers.
// upsertStyle is how a batch's dialect tells what its upsert did.
type upsertStyle uint8

const (
	upsertFlagged upsertStyle = iota + 1
	upsertMarked
	upsertTwoStep
	upsertListed
	upsertReadFirst
)

// chooseUpsert returns the batch's upsert style. Every style runs in a
// transaction, the caller's or the call's own (writeAll): a row the upsert
// may not update fails the call once the statement ran, which must then
// leave nothing behind; and the two-step and listed styles need one.
func (b *batch) chooseUpsert() (upsertStyle, error) {
	c := b.c
	returning := slices.Contains(c.tx.Callback().Create().Clauses, "RETURNING")
	if _, _, ok := c.d.MarkMet("", clause.Expr{}, "", []string{""}); ok {
		if !returning {
			return upsertListed, nil
		}
		return upsertMarked, nil
	}
	if !returning {
		return 0, fmt.Errorf("%w: batch upserts need INSERT ... RETURNING here (SQLite 3.35 or newer)", ErrUnsupportedDialect)
	}
	if c.d.WriteLock() != "" {
		return upsertReadFirst, nil
	}
	if c.d.UpsertCreated() != nil {
		ok, err := c.p.upsertTable(c)
		if err != nil {
			return 0, err
		}
		if ok {
			return upsertFlagged, nil
		}
	}
	return upsertTwoStep, nil
}

// upsert sends the upsert of groups, in key order, and gives each group
// the row returned for its key: created for a row inserted. The groups
// left unsettled are those whose row the statement did not return (left
// as it was) or met by another unique key: the caller reads them.
func (b *batch) upsert(groups []*group) error {
	c := b.c
	rowsPtr, err := b.rowsOf(groups)
	if err != nil {
		return err
	}
	if err := c.runHooks(rowsPtr, callbacks.BeforeCreate); err != nil {
		return err
	}
	var created reflect.Value
	switch b.style {
	case upsertFlagged:
		created, err = b.sendUpsert(rowsPtr, groups, b.conflictUpdate(b.update, b.changed()), c.d.UpsertCreated(), 0)
	case upsertMarked:
		created, err = b.sendMarked(rowsPtr, groups)
	case upsertTwoStep:
		lock := b.conflictUpdate([]string{b.keys[0].DBName}, clause.Expr{SQL: "1 = 0"})
		if created, err = b.sendUpsert(rowsPtr, groups, lock, nil, flagInserted); err != nil || c.tx.DryRun {
			break
		}
		rest := unsettled(groups)
		if len(rest) == 0 || len(b.update) == 0 {
			break
		}
		// The rows the hooks ran on.
		restPtr := reflect.New(rowsPtr.Elem().Type())
		for i, g := range groups {
			if !g.row.IsValid() {
				restPtr.Elem().Set(reflect.Append(restPtr.Elem(), rowsPtr.Elem().Index(i)))
			}
		}
		_, err = b.sendUpsert(restPtr, rest, b.conflictUpdate(b.update, b.changed()), nil, flagMet)
	case upsertListed:
		created, err = b.sendListed(rowsPtr, groups)
	case upsertReadFirst:
		created, err = b.sendReadFirst(rowsPtr, groups)
	}
	if err != nil || !created.IsValid() {
		return err
	}
	n := created.Elem().Len()
	c.record(EventCreated, n)
	if n > 0 {
		return c.runHooks(created, callbacks.AfterCreate)
	}
	return nil
}

// conflictUpdate is the ON CONFLICT clause of the dialects that name the
// conflict target: on the key, set cols from the row proposed for
// insertion (and UpdatedAt) where when holds, and the chain's equalities.
func (b *batch) conflictUpdate(cols []string, when clause.Expression) clause.OnConflict {
	target := make([]clause.Column, len(b.keys))
	for i, f := range b.keys {
		target[i] = clause.Column{Name: f.DBName}
	}
	if len(cols)+len(b.touch) == 0 {
		cols = []string{b.keys[0].DBName} // a SET must set something; when holds for no row
	}
	set := clause.AssignmentColumns(append(slices.Clone(cols), b.touch...))
	where := []clause.Expression{when}
	for _, e := range b.c.eqs {
		where = append(where, clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: e.field.DBName}, Value: e.value})
	}
	for _, col := range b.live {
		where = append(where, clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: col}, Value: nil})
	}
	return clause.OnConflict{Columns: target, DoUpdates: set, Where: clause.Where{Exprs: []clause.Expression{allOf(where...)}}}
}

// changed is the condition that a row met differs from the row proposed
// for insertion in one of the update columns.
func (b *batch) changed() clause.Expression {
	differs := make([]clause.Expression, len(b.update))
	for i, col := range b.update {
		differs[i] = b.c.d.Differs(clause.Column{Table: clause.CurrentTable, Name: col}, clause.Column{Table: "excluded", Name: col}, b.dataType(col))
	}
	return anyOf(differs)
}

// dataType is the data type of the model's column col.
func (b *batch) dataType(col string) string {
	if f := b.c.schema.LookUpField(col); f != nil {
		return string(f.DataType)
	}
	return ""
}

// anyOf is the disjunction of exprs, in parentheses; false for none. (In
// GORM's clause.And an OrConditions is joined by OR.)
func anyOf(exprs []clause.Expression) clause.Expression {
	return joined(exprs, " OR ", "1 = 0")
}

// allOf is the conjunction of exprs, in parentheses; true for none.
func allOf(exprs ...clause.Expression) clause.Expression {
	return joined(exprs, " AND ", "1 = 1")
}

func joined(exprs []clause.Expression, sep, none string) clause.Expression {
	if len(exprs) == 0 {
		return clause.Expr{SQL: none}
	}
	vars := make([]any, len(exprs))
	for i, e := range exprs {
		vars[i] = e
	}
	return clause.Expr{SQL: "(" + strings.TrimSuffix(strings.Repeat("?"+sep, len(exprs)), sep) + ")", Vars: vars}
}
