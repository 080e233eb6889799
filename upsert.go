package safefind

import (
	"database/sql"
	"errors"
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The upsert of one statement: CreateOrFind with Assign, where the dialect
// tells an inserted row from an updated one in the statement's result
// (PostgreSQL: xmax). Instead of INSERT, SELECT and UPDATE, one
//
//	INSERT ... ON CONFLICT (the lookup's unique key) DO UPDATE
//	SET the assigned columns and UpdatedAt = the INSERT's
//	WHERE the lookup's equalities RETURNING *, (xmax = 0)
//
// creates the row, or updates the lookup's row with Assign as FirstOrCreate
// would, and returns it with created exact. The DO UPDATE's WHERE keeps the
// UPDATE off a row that holds the key but not the rest of the lookup: that
// row is not the lookup's, and the statement returns nothing. The plan takes
// this path only where it stores what FirstOrCreate's UPDATE would (plan.go,
// canUpsert): the SET takes the INSERT's values (excluded), so every
// assigned value must be one the INSERT stores as given.

// upsert runs the upsert for dest, and sets dest to the row it returns.
// updated is true when the lookup's row existed and was updated; neither is
// true when a row holds the key but does not match the lookup. A unique
// violation on another key is not an error: it is reported as a conflict,
// with the database's error in dup.
func (c *call) upsert() (created, updated bool, dup, err error) {
	set := c.upsertColumns()
	if c.d.UpsertCreated() == nil {
		return c.upsertByAffectedRows(set)
	}
	target := make([]clause.Column, len(c.uniqueKey))
	for i, col := range c.uniqueKey {
		target[i] = clause.Column{Name: col}
	}
	where := make([]clause.Expression, len(c.eqs))
	for i, e := range c.eqs {
		where[i] = clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: e.field.DBName}, Value: e.value}
	}
	dry := c.writeDB(&gorm.Session{DryRun: true, SkipHooks: true, SkipDefaultTransaction: true, Logger: silent{c.tx.Logger}}, c.writing).
		Clauses(
			clause.OnConflict{Columns: target, DoUpdates: clause.AssignmentColumns(set), Where: clause.Where{Exprs: where}},
			clause.Returning{Columns: []clause.Column{{Name: "*", Raw: true}, *c.d.UpsertCreated()}},
		).Create(c.dest.Interface())
	if dry.Error != nil {
		return false, false, nil, dry.Error
	}
	exec := c.tableDB(&gorm.Session{Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}})
	exec.Statement.SQL.WriteString(dry.Statement.SQL.String())
	exec.Statement.Vars = dry.Statement.Vars
	if c.tx.DryRun {
		return false, false, nil, exec.Callback().Raw().Execute(exec).Error
	}
	rows, err := exec.Rows()
	if isDuplicate(c.tx.Dialector, err) {
		return false, false, err, nil
	}
	if err != nil {
		return false, false, nil, err
	}
	flagged := &flaggedRows{Rows: rows}
	row := reflect.New(c.dest.Type().Elem())
	scan := c.tableDB(&gorm.Session{})
	found := rows.Next()
	if found {
		scan.Statement.Schema = c.schema
		scan.Statement.Dest, scan.Statement.ReflectValue = row.Interface(), row.Elem()
		gorm.Scan(flagged, scan, gorm.ScanInitialized)
	}
	if err := errors.Join(scan.Error, rows.Err(), rows.Close()); isDuplicate(c.tx.Dialector, err) {
		return false, false, err, nil
	} else if err != nil {
		return false, false, nil, err
	}
	if !found {
		return false, false, nil, nil
	}
	c.setColumns(row)
	return flagged.flag, !flagged.flag, nil, nil
}

// flaggedRows shows GORM's scan every column but the last, a boolean that
// it keeps as flag.
type flaggedRows struct {
	*sql.Rows
	flag bool
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
	return r.Rows.Scan(append(dest, &r.flag)...)
}

// upsertColumns are the columns the upsert's UPDATE sets: Assign's and the
// auto-update times, sorted.
func (c *call) upsertColumns() []string {
	set := make([]string, 0, len(c.updates)+1)
	for k := range c.updates {
		set = append(set, c.schema.LookUpField(k).DBName) // canUpsert checked the field
	}
	for _, f := range c.schema.Fields {
		if f.AutoUpdateTime > 0 && f.DBName != "" && !slices.Contains(set, f.DBName) {
			set = append(set, f.DBName)
		}
	}
	slices.Sort(set)
	return set
}

// upsertByAffectedRows is the upsert where the statement tells what it did
// by its affected rows (MySQL/MariaDB):
//
//	INSERT ... ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id),
//	col = IF(the lookup, VALUES(col), col), ...
//
// 1: it inserted the row, whose id LAST_INSERT_ID gives. 2: it updated the
// lookup's row. 0: it left the row it met as it was: the lookup's, already
// holding the values, or another row met by a unique key created since the
// catalog was read, which the IF keeps unchanged. The row is then read by
// the lookup; if the lookup's row is another than the one met, the call
// goes on as after a conflict: the lookup's row is read and updated as
// FirstOrCreate updates it.
func (c *call) upsertByAffectedRows(set []string) (created, updated bool, dup, err error) {
	ctx := c.tx.Statement.Context
	pk := c.schema.PrioritizedPrimaryField
	lookup := make([]clause.Expression, len(c.eqs))
	for i, e := range c.eqs {
		lookup[i] = clause.Eq{Column: clause.Column{Name: e.field.DBName}, Value: e.value}
	}
	matches := clause.And(lookup...)
	idCol := clause.Column{Name: pk.DBName}
	assignments := []clause.Assignment{{Column: idCol, Value: clause.Expr{SQL: "LAST_INSERT_ID(?)", Vars: []any{idCol}}}}
	for _, col := range set {
		column := clause.Column{Name: col}
		assignments = append(assignments, clause.Assignment{Column: column,
			Value: clause.Expr{SQL: "IF(?, VALUES(?), ?)", Vars: []any{matches, column, column}}})
	}
	dry := c.writeDB(&gorm.Session{DryRun: true, SkipHooks: true, SkipDefaultTransaction: true, Logger: silent{c.tx.Logger}}, c.writing)
	dry.Statement.BuildClauses = []string{"INSERT", "VALUES", "ON CONFLICT"} // no RETURNING, which would hide the affected rows
	dry = dry.Clauses(clause.OnConflict{DoUpdates: assignments}).Create(c.dest.Interface())
	if dry.Error != nil {
		return false, false, nil, dry.Error
	}
	result := gorm.WithResult()
	exec := c.tableDB(&gorm.Session{Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}})
	exec.Statement.SQL.WriteString(dry.Statement.SQL.String())
	exec.Statement.Vars = dry.Statement.Vars
	exec = exec.Clauses(result)
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
	if met, _ := pk.ValueOf(ctx, row.Elem()); result.RowsAffected == 0 && !storedAsGiven(met, id) {
		// The statement met another row, and left it as it was: as a
		// conflict, the lookup's row is read and updated apart.
		return false, false, nil, nil
	}
	// dest: the row as read, with the columns this statement set as it set
	// them (another caller may have updated the row since), as
	// FirstOrCreate's dest holds the row found with its Updates applied.
	sent := reflect.New(c.dest.Type().Elem())
	sent.Elem().Set(c.dest.Elem())
	c.setColumns(row)
	for _, col := range set {
		f := c.schema.LookUpField(col)
		f.ReflectValueOf(ctx, c.dest.Elem()).Set(f.ReflectValueOf(ctx, sent.Elem()))
	}
	return false, true, nil, nil
}
