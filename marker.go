package safefind

import (
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The marker. A callback knows that a statement is one of a call's own by a
// clause that safefind puts on its statements, the way dbresolver carries
// its choice of database. A clause lives in Statement.Clauses: every clone
// of the statement keeps it (a scope that clones the lookup's statement is
// still the lookup), and every new session drops it (NewDB), so the
// statements GORM derives inside a call do not inherit it: a preload's
// queries, the statements a hook runs on the tx it is given, the saves of
// associations. Settings would not do: GORM copies them into preloads and
// association saves. A statement that a hook derives from its tx without a
// new session (tx.WithContext, tx.Session without NewDB) is a clone of the
// call's statement and keeps the marker, as it keeps the statement's table
// and other clauses; skipped therefore also checks that the row is the
// call's own. No clause builder renders the marker; it never reaches the
// SQL.

// markerName is the marker's key in Statement.Clauses.
const markerName = "safefind:call"

// marker is the clause that marks a statement as the call's own. probe
// marks the lookup run only to read its conditions (call.probeConditions).
// A call holds its markers, so that marking allocates nothing.
type marker struct {
	c     *call
	probe bool
}

// ModifyStatement puts the marker among the statement's clauses (db.Clauses
// calls it).
func (m *marker) ModifyStatement(stmt *gorm.Statement) {
	stmt.Clauses[markerName] = clause.Clause{Name: markerName, Expression: m}
}

// Build renders nothing: the marker is not SQL.
func (*marker) Build(clause.Builder) {}

// mark returns db's statement marked as one of c's own.
func mark(db *gorm.DB, c *call) *gorm.DB {
	c.own = marker{c: c}
	return db.Clauses(&c.own)
}

// markProbe returns db's statement marked as c's probe.
func markProbe(db *gorm.DB, c *call) *gorm.DB {
	c.probe = marker{c: c, probe: true}
	return db.Clauses(&c.probe)
}

// markerOf returns the marker of a statement, nil if it has none.
func markerOf(db *gorm.DB) *marker {
	if cl, ok := db.Statement.Clauses[markerName]; ok {
		m, _ := cl.Expression.(*marker)
		return m
	}
	return nil
}

// callOf returns the call a statement belongs to, or nil.
func callOf(db *gorm.DB) *call {
	if m := markerOf(db); m != nil {
		return m.c
	}
	return nil
}
