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
