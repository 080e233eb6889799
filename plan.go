package safefind

// The write plan. Every call writes through one plan, for one row or many:
// what its INSERT does with a row that exists, what the INSERT runs in, and
// whether the row's associations are saved with it. The drivers (single.go,
// batch.go) carry a plan out; they do not decide it.

// conflictAction is what an INSERT does with a row whose key exists.
type conflictAction uint8

const (
	// conflictFails: a plain INSERT; the database's duplicate-key error is
	// the conflict. Where a failed statement aborts the transaction, it
	// needs a savepoint.
	conflictFails conflictAction = iota
	// conflictSkips: the dialect's clause that skips the row (ON CONFLICT
	// DO NOTHING); where the dialect has none, the INSERT fails as with
	// conflictFails, which there costs only the statement.
	conflictSkips
)

// scope is what an INSERT runs in.
type scope uint8

const (
	// scopeStatement: the statement alone, or the caller's transaction.
	scopeStatement scope = iota
	// scopeSavepoint: a savepoint of safefind's own inside the caller's
	// transaction, released or rolled back before the call returns.
	scopeSavepoint
	// scopeTransaction: a transaction of its own around the writes and
	// their hooks, as GORM's Create opens one for a model with create hooks,
	// so that a hook's error rolls the rows back.
	scopeTransaction
)

// plan is how one call writes.
type plan struct {
	conflict conflictAction
	scope    scope
	// associations: save the rows' associations with them. Not yet: the
	// INSERT omits them (clause.Associations).
	associations bool
}

// planInsertFirst is the plan of CreateOrFind and the batches: skip the
// existing rows, never a savepoint.
func (c *call) planInsertFirst() plan {
	return plan{conflict: conflictSkips, scope: c.ownScope()}
}

// planFindFirst is the plan of FindOrCreate's INSERT after a miss: a plain
// INSERT, in a savepoint where a failed statement would abort the caller's
// transaction, unless the transaction has reached its savepoint budget, in
// which case it skips conflicts like CreateOrFind (reported as
// EventBudgetSwitch).
func (c *call) planFindFirst() plan {
	if !c.needSavepoint() {
		return plan{conflict: conflictFails, scope: c.ownScope()}
	}
	if c.overBudget() {
		c.record(EventBudgetSwitch, 1)
		return plan{conflict: conflictSkips, scope: scopeStatement}
	}
	return plan{conflict: conflictFails, scope: scopeSavepoint}
}

// ownScope is the scope of an INSERT outside a savepoint: a transaction of
// its own for a model with create hooks, where GORM's Create would open one,
// outside the caller's transaction; the statement alone otherwise (a single
// INSERT is atomic by itself).
func (c *call) ownScope() scope {
	if !c.inTx && !c.tx.DryRun && !c.tx.SkipDefaultTransaction && hasCreateHooks(c.schema) {
		return scopeTransaction
	}
	return scopeStatement
}
