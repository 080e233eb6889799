package safefind

import (
	"errors"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// insert inserts dest as pl says, through GORM's Create (its hooks, GORM's
// default transaction where pl's scope is one), and reports whether the row
// was created. A unique violation is not an error: it is reported as a
// conflict, with the database's error in dup.
//
// The INSERT runs on the caller's connection and context, with the caller's
// settings (db.Set), Select and Omit, but none of its clauses: the lookup's
// WHERE, ORDER and locking mean nothing to an INSERT.
func (c *call) insert(pl plan) (created bool, dup error, err error) {
	db := c.writeDB(&gorm.Session{
		SkipDefaultTransaction: pl.scope != scopeTransaction,
		Logger:                 quietConflicts{c.tx.Logger, c.tx.Dialector},
	}, pl)
	if pl.conflict == conflictSkips {
		db = db.Clauses(c.d.SkipOnConflict()...)
	}
	c.insertSent, c.insertErr = false, nil
	r := mark(db, c).Create(c.dest.Interface())
	switch {
	case r.Error == nil:
		return r.RowsAffected > 0, nil, nil
	case errors.Is(r.Error, errSkippedRow) || c.insertSent && isDuplicate(c.tx.Dialector, c.insertErr):
		return false, r.Error, nil // the row's conflict, not an association's
	}
	return false, nil, r.Error
}

// writeDB returns a new statement for an INSERT as pl says: tableDB's, with
// the caller's Select and Omit, and the associations omitted unless pl
// saves them.
func (c *call) writeDB(s *gorm.Session, pl plan) *gorm.DB {
	db := c.tableDB(s)
	st := db.Statement
	st.Selects = c.tx.Statement.Selects
	st.Omits = append([]string(nil), c.tx.Statement.Omits...)
	if !pl.associations {
		st.Omits = append(st.Omits, clause.Associations)
	}
	return db
}

// renderDB returns a statement on which GORM's Create renders, as a
// DryRun, an INSERT that safefind sends itself (sendDB): defaults,
// timestamps and serializers as Create has them, no hook run, nothing
// traced.
func (c *call) renderDB(pl plan) *gorm.DB {
	return c.writeDB(&gorm.Session{DryRun: true, SkipHooks: true, SkipDefaultTransaction: true, Logger: silent{c.tx.Logger}}, pl)
}

// sendDB returns a new statement, on the primary, that sends sql with
// vars (rendered on renderDB), its expected conflicts kept out of the log.
func (c *call) sendDB(sql string, vars []any) *gorm.DB {
	db := onPrimary(c.tableDB(&gorm.Session{Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}}))
	db.Statement.SQL.WriteString(sql)
	db.Statement.Vars = vars
	return db
}

// tableDB returns a new statement on the caller's connection and context,
// on the lookup's table (the name before an alias), with the caller's
// settings and resolver but none of its clauses, and the session options s
// (whose NewDB is set): for the INSERTs, the hooks and the read-back of
// inserted rows.
func (c *call) tableDB(s *gorm.Session) *gorm.DB {
	s.NewDB = true
	db := c.tx.Session(s).Clauses()
	st := db.Statement
	c.tx.Statement.Settings.Range(func(k, v any) bool {
		st.Settings.Store(k, v)
		return true
	})
	keepResolver(c.tx, db)
	if c.insertTable != "" {
		return db.Table(c.insertTable)
	}
	st.Table, st.TableExpr = c.table, c.tableExpr
	return db
}
