package safefind

import (
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// CreateOrFind in one statement, where the dialect lets a SELECT read an
// INSERT's RETURNING in a WITH query (PostgreSQL):
//
//	WITH ins AS (INSERT ... ON CONFLICT DO NOTHING RETURNING *)
//	SELECT *, TRUE FROM ins
//	UNION ALL (SELECT *, FALSE FROM t WHERE the lookup
//	           AND NOT EXISTS (SELECT 1 FROM ins) LIMIT 1)
//
// inserts the row, or reads the existing one, and says which: one round
// trip where INSERT then SELECT take two. The SELECT reads with the
// statement's snapshot, which a row committed while the INSERT waited on it
// is not in: the statement then returns nothing and runs again, as the
// read after a conflict would (WithConflictRetries).

// selectsAfterInsert reports whether CreateOrFind's INSERT and its read can
// be one statement: the dialect allows it; the INSERT skips conflicts,
// alone (no savepoint, no transaction of its own, no associations, no
// Assign); nothing runs beside the statement that GORM's Create or Find
// would run (no create hooks, no AfterFind, no preloads); and the lookup is
// a WHERE on the table alone, which the statement can read with as the
// lookup would (no joins, table expression, Select, Omit, ORDER, LIMIT,
// locking clause, nor the model's query clauses, such as soft delete).
func (c *call) selectsAfterInsert(pl plan) bool {
	s := c.schema
	return c.d.SelectsAfterInsert() && c.op == opCreateOrFind && c.plainLookup &&
		pl.conflict == conflictSkips && pl.existing == existingKept && pl.scope == scopeStatement && !pl.associations &&
		!hasCreateHooks(s) && !s.AfterFind && len(s.QueryClauses) == 0 && len(s.CreateClauses) == 0 &&
		len(c.tx.Statement.Selects) == 0 && len(c.tx.Statement.Omits) == 0
}

// plainLookup reports whether the lookup statement is a WHERE on its
// table and nothing else.
func plainLookup(stmt *gorm.Statement) bool {
	if len(stmt.Joins) > 0 || stmt.TableExpr != nil || stmt.Distinct || len(stmt.Selects) > 0 || len(stmt.Omits) > 0 || len(stmt.Preloads) > 0 {
		return false
	}
	for name := range stmt.Clauses {
		if name != "WHERE" && name != markerName {
			return false
		}
	}
	return true
}

// CreateOrFind with Assign in one statement, where the upsert's ON
// CONFLICT (key) DO UPDATE will not do (upsertStyle): inside the caller's
// transaction, which a unique violation on another key than ON CONFLICT's
// would abort, and on a table that cannot return xmax (a partitioned one):
//
//	WITH ins AS (INSERT ... ON CONFLICT DO NOTHING RETURNING *),
//	upd AS (UPDATE t SET what GORM's Updates would set
//	        WHERE the lookup AND NOT EXISTS (SELECT 1 FROM ins) RETURNING *)
//	SELECT *, TRUE FROM ins UNION ALL SELECT *, FALSE FROM upd
//
// skips any conflict, as CreateOrFind's INSERT does, and updates the
// lookup's row when it inserted none. The UPDATE reads with the
// statement's snapshot, as the SELECT of insertOrRead does: a row
// committed while the INSERT waited on it is not updated, the statement
// returns nothing, and the call reads the row and updates it as after a
// conflict.

// upsertWith sends the statement for dest and Assign's SET, and sets dest
// to the row it returns: created, or updated, or neither when it returned
// no row.
func (c *call) upsertWith(set []clause.Assignment) (created, updated bool, dup, err error) {
	st, err := c.withInsert()
	if err != nil {
		return false, false, nil, err
	}
	st.SQL.WriteString(", upd AS (UPDATE ")
	st.WriteQuoted(clause.Table{Name: clause.CurrentTable})
	st.SQL.WriteString(" SET ")
	clause.Set(set).Build(st)
	st.SQL.WriteString(" WHERE ")
	c.where.Build(st)
	st.SQL.WriteString(" AND NOT EXISTS (SELECT 1 FROM ins) RETURNING *) SELECT *, TRUE FROM ins UNION ALL SELECT *, FALSE FROM upd")
	row, flag, err := c.sendWith(st)
	created, updated, err = c.upserted(row, flag, set, err)
	return created, updated, nil, err
}

// insertOrRead sends the statement for dest and returns the row it
// returned, a new value behind a pointer, and whether it inserted it; no
// row when the statement's snapshot did not show the row it met.
func (c *call) insertOrRead() (row reflect.Value, created bool, err error) {
	st, err := c.withInsert()
	if err != nil {
		return row, false, err
	}
	st.SQL.WriteString(" SELECT *, TRUE FROM ins UNION ALL (SELECT *, FALSE FROM ")
	st.WriteQuoted(clause.Table{Name: clause.CurrentTable})
	st.SQL.WriteString(" WHERE ")
	c.where.Build(st)
	st.SQL.WriteString(" AND NOT EXISTS (SELECT 1 FROM ins)")
	if c.uniqueKey == nil { // else one row at most (unordered)
		st.SQL.WriteString(" ORDER BY ")
		st.WriteQuoted(firstByPrimaryKey.Column)
	}
	st.SQL.WriteString(" LIMIT 1)")
	row, flag, err := c.sendWith(st)
	return row, row.IsValid() && flag == flagInserted, err
}

// withInsert renders, as Create would, dest's INSERT that skips a conflict
// and returns the row, and returns its statement, whose SQL is now the
// start of a WITH query: WITH ins AS (that INSERT).
func (c *call) withInsert() (*gorm.Statement, error) {
	dry := c.renderDB(c.writing).
		Clauses(append(c.d.SkipOnConflict(), clause.Returning{})...).Create(c.dest.Interface())
	if dry.Error != nil {
		return nil, dry.Error
	}
	st := dry.Statement
	insert := st.SQL.String()
	st.SQL.Reset()
	st.SQL.WriteString("WITH ins AS (")
	st.SQL.WriteString(insert)
	st.SQL.WriteString(")")
	return st, nil
}

// sendWith sends the WITH query of st, which returns one row at most with
// its flag last, and scans it (flaggedRow); a DryRun only traces it.
func (c *call) sendWith(st *gorm.Statement) (row reflect.Value, flag int, err error) {
	exec := c.sendDB(st.SQL.String(), st.Vars)
	if c.tx.DryRun {
		return row, 0, exec.Callback().Raw().Execute(exec).Error
	}
	return c.flaggedRow(exec)
}
