package safefind

import (
	"fmt"

	"gorm.io/gorm"
)

// Read replicas, through GORM's dbresolver plugin (gorm.io/plugin/dbresolver).
//
// dbresolver sends a query to a replica unless the statement carries its
// Write setting (what dbresolver.Write stores), a locking clause, or runs in a
// transaction. safefind lets a replica serve only the first read of
// FindOrCreate and FindOrCreateAll, the one that wins on hit-heavy
// workloads. Everything after a miss goes to the primary: the INSERT (a
// create, which dbresolver always sends there), the read of a conflict's
// winner, which a lagging replica would not show yet, and the read-back of
// rows just inserted. CreateOrFind reads only from the primary. The
// catalog read of the unique-index guard goes to the primary too: an index
// created a moment ago may not be on the replica yet.
//
// safefind sets the setting by its key rather than through dbresolver.Write,
// so that the library needs no dependency beyond GORM; without dbresolver the
// setting is inert.

// resolverPlugin is dbresolver's name in gorm.Config.Plugins.
const resolverPlugin = "gorm:db_resolver"

// resolverWrite is the statement setting of dbresolver's Write clause.
const resolverWrite = "gorm:db_resolver:write"

// onPrimary returns q sent to the primary when dbresolver is in use.
func onPrimary(q *gorm.DB) *gorm.DB {
	return q.Set(resolverWrite, struct{}{})
}

// resolverUsing is the clause of dbresolver's Use, which names the resolver
// (the set of databases) a statement goes to.
const resolverUsing = "gorm:db_resolver:using"

// keepResolver gives the statement of to the resolver the caller's chain
// from named with dbresolver.Use, if any: statements safefind builds anew
// (the INSERT, the catalog read) go to the same databases as the lookup.
func keepResolver(from, to *gorm.DB) {
	if u, ok := from.Statement.Clauses[resolverUsing]; ok {
		to.Statement.Clauses[resolverUsing] = u
	}
}

// resolverName returns the name the chain of db gave dbresolver.Use, or "".
func resolverName(db *gorm.DB) string {
	if u, ok := db.Statement.Clauses[resolverUsing]; ok {
		return fmt.Sprint(u.Expression)
	}
	return ""
}

// catalogDB returns a new statement for reading the catalog of the lookup's
// table: on the primary, of the databases the lookup goes to (the
// resolver named with dbresolver.Use, or the one registered for the table).
func (c *call) catalogDB() *gorm.DB {
	q := onPrimary(c.tx.Session(&gorm.Session{NewDB: true}))
	q.Statement.Table = c.table
	keepResolver(c.tx, q)
	return q
}

// routed returns the call's lookup routed for a read: after a miss (latest) on the
// primary; the first read where dbresolver chooses, a replica, unless
// [WithPrimaryReads].
func (c *call) routed(latest bool) *gorm.DB {
	q := c.first
	if q != nil {
		c.first = nil
	} else {
		q = c.lookup()
	}
	if latest || c.p.cfg.primaryReads {
		return onPrimary(q)
	}
	return q
}

// WithPrimaryReads sends the first read of [FindOrCreate] and
// [FindOrCreateAll] to the primary too, where GORM's dbresolver plugin
// would send it to a replica. Use it when a hit must be as fresh as the
// primary: a replica's hit can be as old as its lag (a row deleted or
// updated on the primary may still be returned as it was). For one call,
// chain dbresolver.Write instead.
func WithPrimaryReads() Option {
	return func(c *config) { c.primaryReads = true }
}
