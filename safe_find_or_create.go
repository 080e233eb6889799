package safefind

import "gorm.io/gorm"

// FindOrCreate returns the row that tx and conds look up, creating it if
// there is none, safely under concurrency. It is the double-checked form,
// the cheapest when the row usually exists:
//
//  1. A plain SELECT (with the caller's locking clause, if any). On a hit,
//     dest is overwritten with the row: one statement, no savepoint, no
//     transaction.
//  2. On a miss, an INSERT of dest as the caller prepared it (the attributes
//     to create with) plus the values of the lookup's equality conditions.
//     Inside a transaction on PostgreSQL, where a failed statement aborts the
//     transaction, the INSERT runs in a savepoint, released on success and
//     rolled back on a conflict; MySQL/MariaDB and SQLite roll back only the
//     failed statement and never get a savepoint.
//  3. If the INSERT met a unique conflict, another caller won the race: the
//     winner's row is read (with a shared locking read inside a MySQL/MariaDB
//     transaction, so a REPEATABLE READ snapshot cannot hide it) and returned
//     with created false.
//
// tx is any GORM chain: Where, Table, Model, Scopes, Clauses, Session,
// WithContext, inside a transaction or not. conds are inline conditions as
// FirstOrCreate takes them; the lookup is the conjunction of all of them. The
// equalities among them (struct and map conditions, clause.Eq, and SQL of the
// form "a = ? AND b = ?") are set on the row to create; other conditions only
// filter the reads. Associations are not saved.
//
// created is true only for the one caller whose INSERT created the row.
// Errors: the sentinels of this package for bad input, before anything is
// written; [ErrStaleSnapshot] when a PostgreSQL snapshot hides the winner's
// row; [ErrConflictNotFound] when a conflict's row cannot be found; the
// context's error; otherwise the database's, wrapped. Check [IsRetryable]
// to know whether to retry the whole transaction.
func FindOrCreate(tx *gorm.DB, dest any, conds ...any) (created bool, err error) {
	c, err := begin(tx, dest, conds, opFindOrCreate)
	defer func() { c.finish(err) }()
	if err != nil {
		return false, err
	}
	found, err := c.read(false)
	if err != nil {
		return false, err
	}
	if found {
		c.record(EventFound, 1)
		return false, nil
	}
	return c.createOrRead(false)
}
