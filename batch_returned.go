package safefind

import (
	"errors"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// A batch upsert's statements as GORM renders them, sent by safefind, and
// the rows they return matched to the groups by key with what each row
// went through (its flag).

// render renders the INSERT of rowsPtr with the clauses given, as a
// DryRun of GORM's Create (defaults, timestamps, serializers), and returns
// a function that makes a statement to send it.
func (b *batch) render(rowsPtr reflect.Value, build func(*gorm.DB) *gorm.DB) (func() *gorm.DB, error) {
	c := b.c
	dry := build(c.renderDB(b.plan))
	if dry = dry.Create(rowsPtr.Interface()); dry.Error != nil {
		return nil, dry.Error
	}
	sql, vars := dry.Statement.SQL.String(), dry.Statement.Vars
	return func() *gorm.DB { return c.sendDB(sql, vars) }, nil
}

// sendUpsert sends the INSERT of rowsPtr with onConflict, RETURNING * and
// the flag column (nil: every row returned has the flag every), and settles
// the groups returned. It returns the rows inserted.
func (b *batch) sendUpsert(rowsPtr reflect.Value, groups []*group, onConflict clause.OnConflict, flag *clause.Column, every int) (reflect.Value, error) {
	returning := clause.Returning{Columns: []clause.Column{{Name: "*", Raw: true}}}
	if flag != nil {
		returning.Columns = append(returning.Columns, *flag)
	}
	exec, err := b.render(rowsPtr, func(db *gorm.DB) *gorm.DB { return db.Clauses(onConflict, returning) })
	if err != nil {
		return reflect.Value{}, err
	}
	if flag == nil {
		return b.sendFlagged(exec, groups, every)
	}
	return b.sendFlagged(exec, groups, flagColumn)
}

// flagColumn: sendFlagged reads each row's flag from its last column.
// flagKnown: a row is met if its primary key is in b.known, else inserted.
const (
	flagColumn = -1
	flagKnown  = -2
)

// sendFlagged sends the statement that exec makes, scans the rows it
// returns, each with its flag (from its last column with flagColumn, else
// every row has the flag given), and gives each group the row with its
// key. It returns the rows inserted.
func (b *batch) sendFlagged(exec func() *gorm.DB, groups []*group, every int) (reflect.Value, error) {
	flagged := every == flagColumn
	c := b.c
	if c.tx.DryRun {
		db := exec()
		return reflect.Value{}, db.Callback().Raw().Execute(db).Error
	}
	rowsPtr := reflect.New(reflect.SliceOf(b.typ))
	var flags []any
	retries := 0
	err := c.retryStatement(&retries, func() error {
		rowsPtr.Elem().SetLen(0)
		res, err := exec().Rows()
		if err != nil {
			return err
		}
		scan := c.tableDB(&gorm.Session{})
		scan.Statement.Schema = c.schema
		scan.Statement.Dest, scan.Statement.ReflectValue = rowsPtr.Interface(), rowsPtr.Elem()
		rows := &flaggedRows{Rows: res}
		if flagged {
			gorm.Scan(rows, scan, 0)
		} else {
			gorm.Scan(res, scan, 0)
		}
		flags = rows.flags
		return errors.Join(scan.Error, res.Err(), res.Close())
	})
	if err != nil {
		return reflect.Value{}, err
	}
	all := rowsPtr.Elem()
	created := reflect.New(all.Type())
	var inserted, met []int
	for i := range all.Len() {
		flag := every
		if every == flagKnown {
			flag = flagInserted
			if b.known[b.rowID(all.Index(i))] {
				flag = flagMet
			}
		}
		if flagged {
			flag = flagOther // a row without its flag is nobody's
			if i < len(flags) {
				flag = flagOf(flags[i])
			}
		}
		switch flag {
		case flagInserted:
			inserted = append(inserted, i)
		case flagMet:
			met = append(met, i)
		default:
			if b.update != nil {
				return reflect.Value{}, b.metOther()
			}
		}
	}
	created.Elem().Set(pick(all, inserted))
	b.match(groups, pick(all, met), false)
	c.record(EventFound, len(met))
	b.match(groups, created.Elem(), true)
	b.remember(created.Elem())
	return created, nil
}

// pick returns a new slice of the elements of rows at idx.
func pick(rows reflect.Value, idx []int) reflect.Value {
	out := reflect.MakeSlice(rows.Type(), 0, len(idx))
	for _, i := range idx {
		out = reflect.Append(out, rows.Index(i))
	}
	return out
}

// sendReadFirst is the upsert of a database with one writer at a time
// (upsertReadFirst): the write lock, a read of the ids by key (the rows
// whole would cost more than a read of the few the upsert leaves as they
// were, afterwards), then the upsert; a row the upsert returns is one it
// inserted unless the read found it.
func (b *batch) sendReadFirst(rowsPtr reflect.Value, groups []*group) (reflect.Value, error) {
	c := b.c
	if !b.locked {
		lock := c.tableDB(&gorm.Session{}).Exec(c.d.WriteLock(), clause.Table{Name: clause.CurrentTable})
		if lock.Error != nil {
			return reflect.Value{}, lock.Error
		}
		b.locked = true // until the transaction ends
	}
	read := reflect.New(reflect.SliceOf(b.typ))
	if err := c.reader(true).Select(b.identityColumns()).Where(b.keysIn(groups)).Find(read.Interface()).Error; err != nil {
		return reflect.Value{}, err
	}
	b.known = make(map[string]bool, read.Elem().Len())
	for i := range read.Elem().Len() {
		b.known[b.rowID(read.Elem().Index(i))] = true
	}
	created, err := b.sendUpsert(rowsPtr, groups, b.conflictUpdate(b.update, b.changed()), nil, flagKnown)
	if err != nil || c.tx.DryRun {
		return created, err
	}
	return created, nil
}

// identityColumns are the columns rowID reads: the primary key's, or the
// key's.
func (b *batch) identityColumns() []string {
	if cols := b.c.schema.PrimaryFieldDBNames; len(cols) > 0 {
		return cols
	}
	cols := make([]string, len(b.keys))
	for i, f := range b.keys {
		cols[i] = f.DBName
	}
	return cols
}

// rowID is a row's identity: its primary key, or its key as Go holds it
// for a model without one.
func (b *batch) rowID(row reflect.Value) string {
	if id := b.pkID(row); id != "" {
		return id
	}
	vals := make([]any, len(b.keys))
	for k, f := range b.keys {
		v, _ := f.ValueOf(b.c.tx.Statement.Context, row)
		vals[k], _ = keyValue(v)
	}
	return keyID(vals)
}
