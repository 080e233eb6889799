package safefind

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
)

// The batch's INSERT. GORM renders it (defaults, timestamps, serializers);
// safefind sends it and matches what the database returns to the groups by
// key. GORM's own Create would scan the RETURNING rows into the elements by
// position, which is wrong as soon as a row in the middle is skipped.
//
// Outside a transaction a send that loses a deadlock or a certification is
// sent again (retryStatement): on MySQL/MariaDB a multi-row INSERT that
// fails on a duplicate rolls back its rows while others may wait on them;
// InnoDB turns those waits into gap locks, and three or more overlapping
// batches can deadlock even in key order. Only the send is repeated: the
// hooks ran once, before it.

// insert inserts the rows of groups, in key order, as the plan says, and returns
// the groups whose row another caller created: skipped by the INSERT, or,
// on MySQL/MariaDB, all of them when the INSERT met a conflict. Hooks run as
// GORM's Create runs them: BeforeSave and BeforeCreate on every row to
// insert, AfterCreate and AfterSave on the rows created.
func (b *batch) insert(groups []*group) (lost []*group, err error) {
	c := b.c
	rowsPtr, err := b.rowsOf(groups)
	if err != nil {
		return nil, err
	}
	if err := c.runHooks(rowsPtr, callbacks.BeforeCreate); err != nil {
		return nil, err
	}
	marks, err := b.marksInserts()
	if err != nil {
		return nil, err
	}
	if marks {
		created, err := b.sendMarked(rowsPtr, groups)
		if err != nil || !created.IsValid() {
			return groups, err // !created.IsValid(): DryRun
		}
		met := len(groups) - created.Elem().Len() - len(unsettled(groups))
		c.record(EventConflict, met)
		return b.created(groups, created)
	}
	// RETURNING * where GORM renders it for this server (not on MySQL, nor
	// SQLite before 3.35).
	var skip []clause.Expression
	if b.plan.conflict == conflictSkips {
		skip = c.d.SkipOnConflict()
	}
	dry := c.renderDB(b.plan).
		Clauses(append(skip, clause.Returning{})...).Create(rowsPtr.Interface())
	if dry.Error != nil {
		return nil, dry.Error
	}
	returning := slices.Contains(c.tx.Callback().Create().Clauses, "RETURNING")
	if len(skip) > 0 && !returning {
		// A skipped row leaves no trace without RETURNING.
		return nil, fmt.Errorf("%w: batches need INSERT ... RETURNING here (SQLite 3.35 or newer)", ErrUnsupportedDialect)
	}
	// A statement of its own for each send: GORM clears a statement's SQL
	// once it ran.
	sql, vars := dry.Statement.SQL.String(), dry.Statement.Vars
	exec := func() *gorm.DB {
		db := c.tableDB(&gorm.Session{Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}})
		db.Statement.SQL.WriteString(sql)
		db.Statement.Vars = vars
		return db
	}
	if c.tx.DryRun {
		// Traced, not sent: the rows stay unsettled, and are reported lost
		// so that the read of the winners is traced too.
		db := exec()
		return groups, db.Callback().Raw().Execute(db).Error
	}
	var created reflect.Value // a pointer to a slice of the rows created
	if returning {
		created, err = b.sendReturning(exec, groups, len(skip) == 0)
	} else {
		created, err = b.sendThenRead(exec, groups)
	}
	if err != nil || !created.IsValid() {
		return groups, err // !created.IsValid(): all or nothing, and nothing was inserted
	}
	return b.created(groups, created)
}

// created ends an INSERT that created the rows of created (a pointer to a
// slice): it counts them, runs their AfterCreate hooks, and returns the
// groups still unsettled.
func (b *batch) created(groups []*group, created reflect.Value) ([]*group, error) {
	c := b.c
	n := created.Elem().Len()
	c.record(EventCreated, n)
	if n > 0 {
		// The groups hold the elements of created: they see what hooks change.
		if err := c.runHooks(created, callbacks.AfterCreate); err != nil {
			return nil, err
		}
	}
	return unsettled(groups), nil
}

// marksInserts reports whether the batch's INSERT is the marked upsert of
// no column (MarkMet, where the server has RETURNING): a conflict leaves the
// row met as it was and fails nothing, so that no statement rollback turns
// the locks of concurrent batches into gap locks that deadlock. Not on a
// table with an UPDATE trigger, which the upsert would fire: the catalog
// is read at the batch's first INSERT, so that a trigger created since the
// last call is seen.
func (b *batch) marksInserts() (bool, error) {
	c := b.c
	if b.marks != nil {
		return *b.marks, nil
	}
	marks := false
	live, known := c.liveColumns()
	if _, _, ok := c.d.MarkMet("", clause.Expr{}, "", []string{""}); ok && known &&
		slices.Contains(c.tx.Callback().Create().Clauses, "RETURNING") {
		marks, b.live = true, live
		if !c.tx.DryRun {
			triggers, err := c.d.UpdateTriggers(c.catalogDB(), c.catalogTable)
			if err != nil {
				return false, fmt.Errorf("safefind: read the triggers of %s: %w", c.catalogTable, err)
			}
			marks = !triggers
		}
	}
	b.marks = &marks
	return marks, nil
}

// rowsOf returns a new slice, behind a pointer, of the first element of
// each group with the chain's equalities, Attrs and Assign set.
func (b *batch) rowsOf(groups []*group) (reflect.Value, error) {
	ctx := b.c.tx.Statement.Context
	rowsPtr := reflect.New(reflect.SliceOf(b.typ))
	rowsPtr.Elem().Set(reflect.MakeSlice(rowsPtr.Elem().Type(), len(groups), len(groups)))
	rows := rowsPtr.Elem()
	for i, g := range groups {
		rows.Index(i).Set(b.elem(g.idx[0]))
		if err := b.c.assignTo(ctx, rows.Index(i)); err != nil {
			return reflect.Value{}, err
		}
		if err := b.c.setRequestOn(ctx, rows.Index(i)); err != nil {
			return reflect.Value{}, err
		}
	}
	return rowsPtr, nil
}

// sendReturning sends the INSERT ... RETURNING and gives each group the row
// returned for its key. A duplicate-key error means nothing was inserted
// where allOrNothing (no skip clause): it returns no rows and no error.
func (b *batch) sendReturning(exec func() *gorm.DB, groups []*group, allOrNothing bool) (reflect.Value, error) {
	c := b.c
	var created reflect.Value
	retries := 0
	err := c.retryStatement(&retries, func() error {
		created = reflect.New(reflect.SliceOf(b.typ))
		res, err := exec().Rows()
		if err != nil {
			return err
		}
		// A duplicate may surface while the rows are read (MariaDB).
		if res.Next() {
			err = c.tx.Session(&gorm.Session{NewDB: true}).ScanRows(res, created.Interface())
		}
		return errors.Join(err, res.Err(), res.Close())
	})
	if err != nil {
		if allOrNothing && isDuplicate(c.tx.Dialector, err) {
			return reflect.Value{}, nil
		}
		return reflect.Value{}, err
	}
	b.match(groups, created.Elem(), true)
	b.remember(created.Elem())
	return created, nil
}

// sendThenRead sends the INSERT where there is no RETURNING (MySQL): all or
// nothing. When every row was inserted it reads them back, by key alone (the
// chain's filters may not hold for them), for their ids and defaults.
func (b *batch) sendThenRead(exec func() *gorm.DB, groups []*group) (reflect.Value, error) {
	c := b.c
	retries := 0
	err := c.retryStatement(&retries, func() error {
		db := exec()
		return db.Callback().Raw().Execute(db).Error
	})
	if err != nil {
		if isDuplicate(c.tx.Dialector, err) {
			return reflect.Value{}, nil
		}
		return reflect.Value{}, err
	}
	missing, err := b.readFrom(onPrimary(c.tableDB(&gorm.Session{})), groups)
	if err != nil {
		return reflect.Value{}, err
	}
	if len(missing) > 0 {
		// Stored otherwise than Go holds the key: find them one by one.
		if err := b.oneByOne(missing, true); err != nil {
			return reflect.Value{}, err
		}
	}
	created := reflect.New(reflect.SliceOf(b.typ))
	created.Elem().Set(reflect.MakeSlice(created.Elem().Type(), len(groups), len(groups)))
	for i, g := range groups {
		created.Elem().Index(i).Set(g.row)
		g.row, g.created = created.Elem().Index(i), true
	}
	return created, nil
}
