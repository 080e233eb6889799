package safefind

import "reflect"

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
// be one statement that stores what FirstOrCreate's UPDATE would: the
// dialect reports created from it (upsertStyle); the lookup's unique key is
// known; nothing but the row is written (no hooks, no associations, no
// Select or Omit on the chain, no soft delete, whose UPDATE has a condition
// of its own); and every assigned value is one the INSERT stores as given
// (upsert.go).
func (c *call) canUpsert(pl plan) bool {
	st, s := c.tx.Statement, c.schema
	if c.op != opCreateOrFind || pl.existing != existingUpdated || !c.upsertStyle() ||
		len(c.uniqueKey) == 0 || pl.associations || pl.scope != scopeStatement ||
		hasCreateHooks(s) || hasUpdateHooks(s) || len(st.Selects) > 0 || len(st.Omits) > 0 ||
		len(s.QueryClauses) > 0 || len(s.UpdateClauses) > 0 {
		return false
	}
	for k, v := range c.updates {
		f := s.LookUpField(k)
		if f == nil || f.DBName == "" || !f.Creatable || !f.Updatable || f.Serializer != nil ||
			f.AutoCreateTime > 0 || !assignable(v) {
			return false
		}
		if f.HasDefaultValue && reflect.ValueOf(v).IsZero() {
			return false // the INSERT would store the default
		}
	}
	return true
}

// upsertStyle reports whether the dialect can tell, from the upsert
// statement itself, a row it inserted from one it updated: from a column
// of the row returned (PostgreSQL; inside the caller's transaction only
// where the catalog shows no unique key but the primary key and the
// lookup's, since a violation of another than ON CONFLICT's would abort
// the transaction); or from the affected rows of ON DUPLICATE KEY UPDATE
// (MySQL/MariaDB), where the row's id comes back through LAST_INSERT_ID: an
// auto-increment primary key that the call does not set, no other column
// with a database default (an INSERT without RETURNING reads none back),
// and no unique key in the catalog other than the primary key and the
// lookup's.
func (c *call) upsertStyle() bool {
	if c.d.UpsertCreated() != nil {
		if !c.inTx {
			return true
		}
		other, err := c.p.otherUniqueKey(c)
		return err == nil && !other
	}
	if !c.d.UpsertAffectedRows(c.tx.Dialector) {
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
	for _, e := range c.eqs {
		if e.field == pk {
			return false
		}
	}
	for _, f := range s.FieldsWithDefaultDBValue {
		if f != pk {
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
