package safefind

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm"
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

// render renders the INSERT of rowsPtr with the clauses given, as a
// DryRun of GORM's Create (defaults, timestamps, serializers), and returns
// a function that makes a statement to send it.
func (b *batch) render(rowsPtr reflect.Value, build func(*gorm.DB) *gorm.DB) (func() *gorm.DB, error) {
	c := b.c
	dry := build(c.writeDB(&gorm.Session{DryRun: true, SkipHooks: true, SkipDefaultTransaction: true, Logger: silent{c.tx.Logger}}, b.plan))
	if dry = dry.Create(rowsPtr.Interface()); dry.Error != nil {
		return nil, dry.Error
	}
	sql, vars := dry.Statement.SQL.String(), dry.Statement.Vars
	return func() *gorm.DB {
		db := onPrimary(c.tableDB(&gorm.Session{Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}}))
		db.Statement.SQL.WriteString(sql)
		db.Statement.Vars = vars
		return db
	}, nil
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
