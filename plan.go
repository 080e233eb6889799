package safefind

import "slices"

// The write plan. Every call writes through one plan, for one row or many:
// what its INSERT does with a row that exists, what the INSERT runs in, and
// whether the row's associations are saved with it. The plan is decided
// here, once per call; the drivers (single.go, batch.go) carry it out.

// onConflict is what an INSERT does with a row whose key exists.
type onConflict uint8

const (
	// conflictFails: a plain INSERT; the database's duplicate-key error is
	// the conflict. Where a failed statement aborts the transaction, it
	// needs a savepoint.
	conflictFails onConflict = iota
	// conflictSkips: the dialect's clause that skips the row (ON CONFLICT
	// DO NOTHING); where the dialect has none, the INSERT fails as with
	// conflictFails, which there costs only the statement.
	conflictSkips
	// conflictUpdates: one statement inserts the row or updates the
	// lookup's row with Assign, and says which (upsert.go).
	conflictUpdates
)

// writeScope is what an INSERT runs in.
type writeScope uint8

const (
	// scopeStatement: the statement alone, or the caller's transaction.
	scopeStatement writeScope = iota
	// scopeSavepoint: a savepoint of safefind's own inside the caller's
	// transaction, released or rolled back before the call returns
	// (savepoint.go).
	scopeSavepoint
	// scopeTransaction: a transaction of its own around the INSERT and its
	// hooks, as GORM's Create opens one for a model with create hooks, so
	// that a hook's error rolls the row back. A single row gets GORM's own
	// (its INSERT goes through Create); a batch, whose INSERTs and hooks
	// are several statements, opens one around all its chunks.
	scopeTransaction
)

// onExisting is what happens to a row that exists: found by the first
// read, or met by the INSERT.
type onExisting uint8

const (
	// existingKept: the row is returned as it is.
	existingKept onExisting = iota
	// existingUpdated: the row is updated with the chain's Assign, as
	// FirstOrCreate updates it (update.go), then returned.
	existingUpdated
)

// plan is how one call writes.
type plan struct {
	conflict onConflict
	existing onExisting
	scope    writeScope
	// associations: the row carries associations, saved with it as
	// Create saves them, atomically: in a transaction or savepoint of
	// their own, rolled back with a row the INSERT skipped. Otherwise the
	// INSERT omits them (clause.Associations).
	associations bool
	// budgetSwitch: the plan skips conflicts only because the caller's
	// transaction has reached its savepoint budget (EventBudgetSwitch).
	budgetSwitch bool
}

// planSkipping is the plan of the calls whose INSERT skips existing rows:
// CreateOrFind and both batches. It never takes a savepoint.
func (c *call) planSkipping() plan {
	pl := plan{conflict: conflictSkips, existing: c.onExisting(), associations: c.savesAssociations()}
	pl.scope = c.ownScope(pl.associations)
	if c.canUpsert(pl) {
		pl.conflict = conflictUpdates
	}
	return pl
}

// canUpsert reports whether CreateOrFind's INSERT and Assign's UPDATE can
// be one statement that stores and returns what FirstOrCreate would: its
// INSERT is Create's, its SET is the one GORM's Updates builds (upsert.go);
// the lookup's unique key is known; nothing but the row is written or read
// (no hooks, AfterFind included, no associations, no preloads, no Select
// or Omit, no soft delete, whose UPDATE has a condition of its own); and
// the dialect can tell from the statement what it did (upsertStyle, last:
// it may read the catalog).
func (c *call) canUpsert(pl plan) bool {
	st, s := c.tx.Statement, c.schema
	if c.op != opCreateOrFind || pl.existing != existingUpdated || len(c.uniqueKey) == 0 ||
		pl.associations || pl.scope != scopeStatement || hasCreateHooks(s) || hasUpdateHooks(s) || s.AfterFind ||
		len(st.Preloads) > 0 || len(st.Selects) > 0 || len(st.Omits) > 0 ||
		len(s.QueryClauses) > 0 || len(s.UpdateClauses) > 0 {
		return false
	}
	for k := range c.updates {
		if f := s.LookUpField(k); f == nil || f.DBName == "" {
			return false // an association, which Updates would save
		}
	}
	return c.upsertStyle()
}

// upsertStyle reports whether the dialect can tell, from the upsert
// statement itself, a row it inserted from one it updated:
//
//   - from a column of the row returned (PostgreSQL), outside the caller's
//     transaction, which a unique violation on another key than ON
//     CONFLICT's would abort, and on a table that can return it (not a
//     partitioned one); elsewhere from which part of a WITH query returned
//     the row (upsertWith, insert_select.go), where the lookup is a WHERE
//     that the UPDATE can take as it is (plainLookup);
//   - from the affected rows of ON DUPLICATE KEY UPDATE (MySQL/MariaDB),
//     where they are exact on every connection (no dbresolver, which may
//     send it to a source of other flags) and the row's id comes back
//     through LAST_INSERT_ID: an auto-increment primary key that the call
//     does not set, no other column with a database default (an INSERT
//     without RETURNING reads none back), a lookup of exactly the unique
//     key's columns (a row that holds the key but not the rest of the
//     lookup would fire its UPDATE triggers), and no other unique key in
//     the catalog.
func (c *call) upsertStyle() bool {
	if c.d.UpsertCreated() != nil {
		c.upsertInWith = c.inTx
		if !c.inTx {
			ok, err := c.p.upsertTable(c)
			if err != nil {
				return false
			}
			c.upsertInWith = !ok
		}
		return !c.upsertInWith || c.d.SelectsAfterInsert() && c.plainLookup
	}
	if !c.d.UpsertAffectedRows(c.tx.Dialector) || c.tx.Config.Plugins[resolverPlugin] != nil {
		return false
	}
	s, ctx := c.schema, c.tx.Statement.Context
	pk := s.PrioritizedPrimaryField
	if pk == nil || !pk.AutoIncrement || len(s.PrimaryFields) != 1 {
		return false
	}
	if _, zero := pk.ValueOf(ctx, c.dest.Elem()); !zero {
		return false
	}
	for _, list := range [][]assignment{c.attrs, c.assigns} {
		for _, a := range list {
			if a.field == pk {
				return false
			}
		}
	}
	for _, f := range s.FieldsWithDefaultDBValue {
		if f != pk {
			return false
		}
	}
	if len(c.eqs) != len(c.uniqueKey) {
		return false
	}
	for _, e := range c.eqs {
		if e.field == pk || !slices.Contains(c.uniqueKey, e.field.DBName) {
			return false
		}
	}
	other, err := c.p.otherUniqueKey(c)
	return err == nil && !other
}

// planFailing is the plan of FindOrCreate's INSERT after a miss: a plain
// INSERT, in a savepoint where a failed statement would abort the caller's
// transaction, unless the transaction has reached its savepoint budget, in
// which case it skips conflicts as CreateOrFind does.
func (c *call) planFailing() plan {
	pl := plan{conflict: conflictFails, existing: c.onExisting(), associations: c.savesAssociations()}
	pl.scope = c.ownScope(pl.associations)
	if pl.scope == scopeSavepoint || !c.needSavepoint() {
		return pl
	}
	if c.overBudget() {
		pl.conflict, pl.budgetSwitch = conflictSkips, true
		return pl
	}
	pl.scope = scopeSavepoint
	return pl
}

// onExisting is what the chain asks of a row that exists: an update where
// it has Assign.
func (c *call) onExisting() onExisting {
	if len(c.updates) > 0 {
		return existingUpdated
	}
	return existingKept
}

// ownScope is the scope an INSERT needs by itself: with associations, a
// savepoint inside the caller's transaction (on every dialect: the rows
// saved before the INSERT would outlive its failure) and a transaction
// outside one; a transaction of its own for a model with create hooks,
// where GORM's Create would open one; the statement alone otherwise (a
// single INSERT is atomic by itself). DryRun opens none.
func (c *call) ownScope(associations bool) writeScope {
	switch {
	case c.tx.DryRun:
		return scopeStatement
	case associations && c.inTx:
		return scopeSavepoint
	case associations:
		return scopeTransaction
	case !c.inTx && !c.tx.SkipDefaultTransaction && hasCreateHooks(c.schema):
		return scopeTransaction
	}
	return scopeStatement
}
