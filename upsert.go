package safefind

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
)

// The upsert of one statement: CreateOrFind with Assign, where the dialect
// tells an inserted row from an updated one from the statement itself.
// Instead of INSERT, SELECT and UPDATE, on PostgreSQL one
//
//	INSERT ... ON CONFLICT (the lookup's unique key) DO UPDATE
//	SET what GORM's Updates would set WHERE the lookup's equalities
//	RETURNING *, (xmax = 0)
//
// creates the row, as Create would, or updates the lookup's row with
// Assign, as FirstOrCreate's Updates would (the SET is GORM's own, with its
// values as Updates binds them), and says which. The DO UPDATE's WHERE
// keeps the UPDATE off a row that holds the key but not the rest of the
// lookup: that row is not the lookup's, and the statement returns nothing.
// On MySQL/MariaDB, ON DUPLICATE KEY UPDATE says which by its affected
// rows (upsertByAffectedRows). The plan says where either is taken (plan.go,
// canUpsert and upsertStyle).

// upsert runs the upsert for dest, and sets dest to the row it returns.
// updated is true when the lookup's row existed and was updated; neither is
// true when a row holds the key but does not match the lookup. A unique
// violation on another key is not an error: it is reported as a conflict,
// with the database's error in dup.
func (c *call) upsert() (created, updated bool, dup, err error) {
	set, err := c.updateSet()
	if err != nil {
		return false, false, nil, err
	}
	if c.d.UpsertCreated() == nil {
		return c.upsertByAffectedRows(set)
	}
	if c.upsertInWith {
		return c.upsertWith(set)
	}
	target := make([]clause.Column, len(c.uniqueKey))
	for i, col := range c.uniqueKey {
		target[i] = clause.Column{Name: col}
	}
	where := make([]clause.Expression, len(c.eqs))
	for i, e := range c.eqs {
		where[i] = clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: e.field.DBName}, Value: e.value}
	}
	dry := c.renderDB(c.writing).
		Clauses(
			clause.OnConflict{Columns: target, DoUpdates: set, Where: clause.Where{Exprs: where}},
			clause.Returning{Columns: []clause.Column{{Name: "*", Raw: true}, *c.d.UpsertCreated()}},
		).Create(c.dest.Interface())
	if dry.Error != nil {
		return false, false, nil, dry.Error
	}
	exec := c.sendDB(dry.Statement.SQL.String(), dry.Statement.Vars)
	if c.tx.DryRun {
		return false, false, nil, exec.Callback().Raw().Execute(exec).Error
	}
	row, flag, err := c.flaggedRow(exec)
	if isDuplicate(c.tx.Dialector, err) {
		return false, false, err, nil
	}
	created, updated, err = c.upserted(row, flag, set, err)
	return created, updated, nil, err
}

// upserted sets dest from the row an upsert returned with its flag: as
// Create's RETURNING sets a row it inserted (the columns the database
// chose; the others as dest holds them), as FirstOrCreate's Updates sets a
// row it updated. No row: neither.
func (c *call) upserted(row reflect.Value, flag int, set []clause.Assignment, err error) (created, updated bool, _ error) {
	switch {
	case err != nil || !row.IsValid():
		return false, false, err
	case flag == flagInserted:
		ctx := c.tx.Statement.Context
		for _, f := range c.schema.FieldsWithDefaultDBValue {
			f.ReflectValueOf(ctx, c.dest.Elem()).Set(f.ReflectValueOf(ctx, row.Elem()))
		}
		return true, false, nil
	}
	c.setUpdated(row, set)
	return false, true, nil
}

// updateSet is the SET of the UPDATE that FirstOrCreate would send for
// Assign: GORM's own (callbacks.ConvertToAssignments) on a statement of
// Updates with dest as the model: its columns and values as Updates binds
// them, UpdatedAt where GORM moves it (not with SkipHooks, not for a field
// it may not update).
func (c *call) updateSet() ([]clause.Assignment, error) {
	db := c.updateDB().Model(c.dest.Interface())
	st := db.Statement
	st.Dest, st.Schema, st.ReflectValue = maps.Clone(c.updates), c.schema, c.dest.Elem()
	set := callbacks.ConvertToAssignments(st)
	if db.Error != nil {
		return nil, db.Error
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("safefind: Assign's UPDATE of %s sets nothing", c.table)
	}
	return set, nil
}

// setUpdated gives dest the row read after an upsert updated it, with the
// values the upsert set (another caller may have updated the row since) set
// on it as Updates sets them on its model: FirstOrCreate's dest, the row
// found with its Updates applied.
func (c *call) setUpdated(row reflect.Value, set []clause.Assignment) {
	ctx := c.tx.Statement.Context
	c.setColumns(row)
	for _, a := range set {
		if f := c.schema.LookUpField(a.Column.Name); f != nil {
			_ = f.Set(ctx, c.dest.Elem(), a.Value) // Updates bound it: the field takes it, as Updates's model did
		}
	}
}

// flaggedRow sends the statement of exec, which returns at most one row
// with its flag last (flaggedRows), and scans that row into a new value
// behind a pointer; no row (an invalid Value) when it returned none.
func (c *call) flaggedRow(exec *gorm.DB) (row reflect.Value, flag int, err error) {
	rows, err := exec.Rows()
	if err != nil {
		return row, 0, err
	}
	flagged := &flaggedRows{Rows: rows}
	got := rows.Next()
	if got {
		// Scanned on exec's statement, sent: a statement of its own
		// (sendDB).
		row = reflect.New(c.dest.Type().Elem())
		exec.Statement.Schema = c.schema
		exec.Statement.Dest, exec.Statement.ReflectValue = row.Interface(), row.Elem()
		gorm.Scan(flagged, exec, gorm.ScanInitialized)
	}
	if err := errors.Join(exec.Error, rows.Err(), rows.Close()); err != nil || !got {
		return reflect.Value{}, 0, err
	}
	return row, flagOf(flagged.flags[0]), nil
}

// flaggedRows shows GORM's scan every column but the last, a flag of what
// the statement did with the row, that it keeps in flags, row by row.
type flaggedRows struct {
	*sql.Rows
	flags []any
}

func (r *flaggedRows) Columns() ([]string, error) {
	cols, err := r.Rows.Columns()
	if len(cols) > 0 {
		cols = cols[:len(cols)-1]
	}
	return cols, err
}

func (r *flaggedRows) ColumnTypes() ([]*sql.ColumnType, error) {
	types, err := r.Rows.ColumnTypes()
	if len(types) > 0 {
		types = types[:len(types)-1]
	}
	return types, err
}

func (r *flaggedRows) Scan(dest ...any) error {
	r.flags = append(r.flags, nil)
	return r.Rows.Scan(append(dest, &r.flags[len(r.flags)-1])...)
}

// The flag of a row: what the statement did with it.
const (
	flagInserted = 0 // the statement inserted the row
	flagMet      = 1 // the row existed, with the key (updated, or left as it was)
	flagOther    = 2 // the row existed, met by another unique key; left as it was
)

// flagOf reads a row's flag: a boolean true for inserted (UpsertCreated),
// or the number MarkMet's expression gives, as the driver returns it.
func flagOf(v any) int {
	switch v := v.(type) {
	case bool:
		if v {
			return flagInserted
		}
		return flagMet
	case int64:
		return int(v)
	case []byte:
		return flagOf(string(v))
	case string:
		switch v {
		case "0", "t", "true":
			return flagInserted
		case "1", "f", "false":
			return flagMet
		}
	}
	return flagOther
}

// upsertByAffectedRows is the upsert where the statement tells what it did
// by its affected rows (MySQL/MariaDB):
//
//	INSERT ... ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id),
//	col = IF(the lookup, the assigned value, col), ...
//
// 1: it inserted the row, whose id LAST_INSERT_ID gives. 2: it updated the
// lookup's row. 0: it left the row it met as it was: the lookup's, already
// holding the values, or another row met by a unique key created since the
// catalog was read, which the IF keeps unchanged. The row is then read by
// the lookup; unless it is the row the statement met (its id), the call
// goes on as after a conflict: the lookup's row is read again and updated
// as FirstOrCreate updates it.
func (c *call) upsertByAffectedRows(set []clause.Assignment) (created, updated bool, dup, err error) {
	ctx := c.tx.Statement.Context
	pk := c.schema.PrioritizedPrimaryField
	lookup := make([]clause.Expression, len(c.eqs))
	for i, e := range c.eqs {
		lookup[i] = clause.Eq{Column: clause.Column{Name: e.field.DBName}, Value: e.value}
	}
	matches := clause.And(lookup...)
	idCol := clause.Column{Name: pk.DBName}
	assignments := []clause.Assignment{{Column: idCol, Value: clause.Expr{SQL: "LAST_INSERT_ID(?)", Vars: []any{idCol}}}}
	for _, a := range set {
		column := clause.Column{Name: a.Column.Name}
		assignments = append(assignments, clause.Assignment{Column: column,
			Value: clause.Expr{SQL: "IF(?, ?, ?)", Vars: []any{matches, a.Value, column}}})
	}
	dry := c.renderDB(c.writing)
	dry.Statement.BuildClauses = []string{"INSERT", "VALUES", "ON CONFLICT"} // no RETURNING, which would hide the affected rows
	dry = dry.Clauses(clause.OnConflict{DoUpdates: assignments}).Create(c.dest.Interface())
	if dry.Error != nil {
		return false, false, nil, dry.Error
	}
	result := gorm.WithResult()
	exec := c.sendDB(dry.Statement.SQL.String(), dry.Statement.Vars).Clauses(result)
	if err := exec.Callback().Raw().Execute(exec).Error; err != nil || c.tx.DryRun {
		if isDuplicate(c.tx.Dialector, err) {
			return false, false, err, nil
		}
		return false, false, nil, err
	}
	id, err := result.Result.LastInsertId()
	if err != nil {
		return false, false, nil, err
	}
	if result.RowsAffected == 1 {
		return true, false, nil, pk.Set(ctx, c.dest.Elem(), id)
	}
	row, found, err := c.find(true)
	if err != nil || !found {
		return false, false, nil, err
	}
	if met, _ := pk.ValueOf(ctx, row.Elem()); !storedAsGiven(met, id) {
		// The statement met another row, or the row was replaced since:
		// as after a conflict.
		return false, false, nil, nil
	}
	c.setUpdated(row, set)
	return false, true, nil, nil
}
