package safefind

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// insert inserts dest, skipping a conflicting row where the dialect can
// (skip), and reports whether the row was created. A unique violation is not
// an error: it is reported as a conflict, with the database's error in dup.
//
// The INSERT runs on the caller's connection and context, with the caller's
// settings (db.Set), Select and Omit, but none of its clauses: the lookup's
// WHERE, ORDER and locking mean nothing to an INSERT.
func (c *call) insert(skip bool) (created bool, dup error, err error) {
	db := c.writeDB(&gorm.Session{
		// One INSERT is atomic by itself; GORM's default transaction only
		// serves hooks, and associations are not saved.
		SkipDefaultTransaction: c.tx.SkipDefaultTransaction || !hasCreateHooks(c.schema),
		Logger:                 quietConflicts{c.tx.Logger, c.tx.Dialector},
	})
	if skip {
		db = db.Clauses(c.d.SkipOnConflict()...)
	}
	r := mark(db, c).Create(c.dest.Interface())
	switch {
	case r.Error == nil:
		return r.RowsAffected > 0, nil, nil
	case isDuplicate(c.tx.Dialector, r.Error):
		return false, r.Error, nil
	}
	return false, nil, r.Error
}

// writeDB returns a new statement on the caller's connection and context
// for an INSERT into the lookup's table, with the caller's settings, Select
// and Omit, and the session options s (whose NewDB is set).
func (c *call) writeDB(s *gorm.Session) *gorm.DB {
	s.NewDB = true
	db := c.tx.Session(s).Clauses()
	st := db.Statement
	c.tx.Statement.Settings.Range(func(k, v any) bool {
		st.Settings.Store(k, v)
		return true
	})
	st.Selects = c.tx.Statement.Selects
	st.Omits = append(append([]string(nil), c.tx.Statement.Omits...), clause.Associations)
	keepResolver(c.tx, db)
	if c.insertTable != "" {
		return db.Table(c.insertTable)
	}
	st.Table, st.TableExpr = c.table, c.tableExpr
	return db
}

// insert inserts the rows of groups, in key order, and returns the groups
// whose row another caller created: skipped by the INSERT, or, on
// MySQL/MariaDB, all of them when the INSERT met a conflict.
func (b *batch) insert(groups []*group) (lost []*group, err error) {
	c := b.c
	ctx := c.tx.Statement.Context
	rowsPtr := reflect.New(reflect.SliceOf(b.typ))
	rowsPtr.Elem().Set(reflect.MakeSlice(rowsPtr.Elem().Type(), len(groups), len(groups)))
	rows := rowsPtr.Elem()
	for i, g := range groups {
		e := b.elems.Index(g.idx[0])
		if b.ptrs {
			e = e.Elem()
		}
		rows.Index(i).Set(e)
		if err := c.assignTo(ctx, rows.Index(i)); err != nil {
			return nil, err
		}
	}
	hooks := !c.tx.Statement.SkipHooks
	if hooks {
		if err := b.callHooks(rowsPtr, beforeCreate); err != nil {
			return nil, err
		}
	}

	// GORM renders the INSERT (defaults, timestamps, serializers); safefind
	// sends it and reads what it returns. GORM's own Create would scan the
	// RETURNING rows into the elements by position, which is wrong as soon
	// as a row in the middle is skipped.
	// RETURNING * where GORM renders it for this server (not on MySQL, nor
	// SQLite before 3.35).
	skip := c.d.SkipOnConflict()
	dry := c.writeDB(&gorm.Session{DryRun: true, SkipHooks: true, SkipDefaultTransaction: true, Logger: silent{c.tx.Logger}}).
		Clauses(append(skip, clause.Returning{})...).Create(rowsPtr.Interface())
	if dry.Error != nil {
		return nil, dry.Error
	}
	returning := slices.Contains(c.tx.Callback().Create().Clauses, "RETURNING")
	if len(skip) > 0 && !returning {
		// A skipped row leaves no trace without RETURNING.
		return nil, fmt.Errorf("%w: batches need INSERT ... RETURNING here (SQLite 3.35 or newer)", ErrUnsupportedDialect)
	}
	exec := c.tx.Session(&gorm.Session{NewDB: true, Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}}).Clauses()
	exec.Statement.SQL.WriteString(dry.Statement.SQL.String())
	exec.Statement.Vars = dry.Statement.Vars
	exec.Statement.Table = dry.Statement.Table
	keepResolver(c.tx, exec)

	if c.tx.DryRun {
		// Traced, not sent: the rows stay unsettled, and are reported lost
		// so that the read of the winners is traced too.
		return groups, exec.Callback().Raw().Execute(exec).Error
	}
	var createdPtr reflect.Value
	if returning {
		createdPtr = reflect.New(reflect.SliceOf(b.typ))
		res, err := exec.Rows()
		if err == nil {
			// A duplicate may surface while the rows are read (MariaDB).
			if res.Next() {
				err = c.tx.Session(&gorm.Session{NewDB: true}).ScanRows(res, createdPtr.Interface())
			}
			err = errors.Join(err, res.Err(), res.Close())
		}
		if err != nil {
			if len(skip) == 0 && isDuplicate(c.tx.Dialector, err) {
				return groups, nil // all or nothing: nothing was inserted
			}
			return nil, err
		}
		created := createdPtr.Elem()
		b.match(groups, created, true)
		b.remember(created)
		lost = unsettled(groups)
	} else {
		err := exec.Callback().Raw().Execute(exec).Error
		if err != nil {
			if isDuplicate(c.tx.Dialector, err) {
				return groups, nil // all or nothing: nothing was inserted
			}
			return nil, err
		}
		// Every row was inserted; read them back, by key alone (the chain's
		// filters may not hold for them), for their ids and defaults.
		table := onPrimary(c.writeDB(&gorm.Session{}))
		missing, err := b.readFrom(table, groups, false)
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			// Stored otherwise than Go holds the key: find them one by one.
			if err := b.oneByOne(missing, true); err != nil {
				return nil, err
			}
		}
		createdPtr = reflect.New(reflect.SliceOf(b.typ))
		createdPtr.Elem().Set(reflect.MakeSlice(createdPtr.Elem().Type(), len(groups), len(groups)))
		for i, g := range groups {
			createdPtr.Elem().Index(i).Set(g.row)
			g.row, g.created = createdPtr.Elem().Index(i), true
		}
	}
	n := createdPtr.Elem().Len()
	c.record(EventCreated, n)
	if hooks && n > 0 {
		// The groups hold the elements of created: they see what hooks change.
		if err := b.callHooks(createdPtr, afterCreate); err != nil {
			return nil, err
		}
	}
	return lost, nil
}
