package safefind

import (
	"fmt"

	"github.com/safefind/safefind/dialect"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Initialize registers safefind's callbacks on db. GORM calls it from
// db.Use; calling it again on the same DB registers nothing twice. It fails
// with [ErrUnsupportedDialect] for a database safefind does not support.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if dialect.For(db.Dialector.Name()) == nil {
		return fmt.Errorf("%w: %q", ErrUnsupportedDialect, db.Dialector.Name())
	}
	if attrsIndex == nil || assignsIndex == nil {
		return fmt.Errorf("%w: gorm.Statement has no attrs and assigns fields to read Attrs and Assign from", ErrUnsupportedGORM)
	}
	cb := db.Callback()
	for _, r := range []struct {
		name string
		get  func(string) func(*gorm.DB)
		add  func(string, func(*gorm.DB)) error
		fn   func(*gorm.DB)
	}{
		{"safefind:inspect", cb.Query().Get, cb.Query().Before("gorm:query").Register, p.inspectLookup},
		// Before the associations saved after the row: from there on, a
		// row the INSERT skipped is known as skipped.
		{"safefind:skipped", cb.Create().Get, cb.Create().After("gorm:create").Before("gorm:save_after_associations").Register, skipped},
		{"safefind:inserting", cb.Create().Get, cb.Create().After("gorm:save_before_associations").Before("gorm:create").Register, inserting},
		{"safefind:after", cb.Create().Get, cb.Create().After("gorm:create").Register, p.afterStatement},
		{"safefind:after", cb.Query().Get, cb.Query().After("gorm:query").Register, p.afterStatement},
		{"safefind:after", cb.Update().Get, cb.Update().After("gorm:update").Register, p.afterStatement},
		{"safefind:after", cb.Delete().Get, cb.Delete().After("gorm:delete").Register, p.afterStatement},
		{"safefind:after", cb.Row().Get, cb.Row().After("gorm:row").Register, p.afterStatement},
		{"safefind:after", cb.Raw().Get, cb.Raw().After("gorm:raw").Register, p.afterStatement},
		// First of all: a refused statement runs no hook and saves no
		// association.
		{"safefind:before", cb.Create().Get, cb.Create().Before("*").Register, p.beforeStatement},
		{"safefind:before", cb.Query().Get, cb.Query().Before("gorm:query").Register, p.beforeStatement},
		{"safefind:before", cb.Update().Get, cb.Update().Before("*").Register, p.beforeStatement},
		{"safefind:before", cb.Delete().Get, cb.Delete().Before("*").Register, p.beforeStatement},
		{"safefind:before", cb.Row().Get, cb.Row().Before("gorm:row").Register, p.beforeStatement},
		{"safefind:before", cb.Raw().Get, cb.Raw().Before("gorm:raw").Register, p.beforeStatement},
	} {
		if r.get(r.name) != nil {
			continue
		}
		if err := r.add(r.name, r.fn); err != nil {
			return fmt.Errorf("safefind: register callback %s: %w", r.name, err)
		}
	}
	return nil
}

// beforeStatement runs before every statement.
func (p *Plugin) beforeStatement(db *gorm.DB) {
	p.refuseEnded(db)
	p.checkBudget(db)
}

// afterStatement runs after every statement GORM executes: it feeds the savepoint
// counter and the [Counter] carried by the statement's context, if any, and
// notes a transaction that the statement's failure ended.
func (p *Plugin) afterStatement(db *gorm.DB) {
	if db.DryRun || db.Statement.SQL.Len() == 0 || refused(db.Error) {
		return // a refused statement was not sent
	}
	p.noteEnded(db)
	sql := db.Statement.SQL.String()
	sp := isSavepoint(sql)
	if sp {
		p.stats.savepoints.Add(1)
	}
	if db.Error == nil {
		p.trackSavepoints(db, sql, sp)
	}
	if c, ok := db.Statement.Context.Value(counterKey{}).(*Counter); ok {
		c.statements.Add(1)
		if sp {
			c.savepoints.Add(1)
		}
	}
}

// inspectLookup is the Query callback that inspects safefind's lookups before they
// are sent.
func (p *Plugin) inspectLookup(db *gorm.DB) {
	m := markerOf(db)
	if m == nil || db.Error != nil {
		return
	}
	if err := m.c.inspectOnce(db.Statement); err != nil {
		db.AddError(err)
		return
	}
	if m.probe {
		// GORM builds no SQL for a statement that has some, and the probe
		// is a DryRun: it sends nothing.
		db.Statement.SQL.WriteString("/* safefind: the lookup's conditions were read */")
		return
	}
	if m.c.uniqueKey != nil && !m.c.batch {
		unordered(db.Statement)
	}
}

// unordered drops the ORDER BY of a single-row read (find), on a lookup
// whose equalities cover a unique key (the guard's): it finds one row at
// most, the row FirstOrCreate's ORDER BY would pick, and the server sorts
// nothing. An order of the caller's is kept.
func unordered(stmt *gorm.Statement) {
	if cl, ok := stmt.Clauses["ORDER BY"]; ok {
		if o, ok := cl.Expression.(clause.OrderBy); ok && o.Expression == nil && len(o.Columns) == 1 && o.Columns[0] == firstByPrimaryKey {
			delete(stmt.Clauses, "ORDER BY")
		}
	}
}
