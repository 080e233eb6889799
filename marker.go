package safefind

import (
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The marker. A callback knows that a statement is one of a call's own by a
// clause that only safefind's statements carry, the way dbresolver carries
// its choice of database. A clause lives in Statement.Clauses: every clone
// of the statement keeps it (a scope that clones the lookup's statement is
// still the lookup), and every new session drops it (NewDB), so the
// statements GORM derives inside a call never inherit it: a preload's
// queries, a hook's own queries, the saves of associations. Settings would
// not do: GORM copies them into preloads and association saves. No clause
// builder renders the marker; it never reaches the SQL.

// markerName is the marker's key in Statement.Clauses.
const markerName = "safefind:call"

// marker is the clause that marks a statement as the call's own.
type marker struct{ c *call }

// ModifyStatement puts the marker among the statement's clauses (db.Clauses
// calls it).
func (m marker) ModifyStatement(stmt *gorm.Statement) {
	stmt.Clauses[markerName] = clause.Clause{Name: markerName, Expression: m}
}

// Build renders nothing: the marker is not SQL.
func (marker) Build(clause.Builder) {}

// mark returns db's statement marked as one of c's own.
func mark(db *gorm.DB, c *call) *gorm.DB { return db.Clauses(marker{c}) }

// callOf returns the call a statement belongs to, or nil.
func callOf(db *gorm.DB) *call {
	if cl, ok := db.Statement.Clauses[markerName]; ok {
		if m, ok := cl.Expression.(marker); ok {
			return m.c
		}
	}
	return nil
}
