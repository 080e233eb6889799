package safefind

import "gorm.io/gorm"

// CreateOrFind creates the row that tx and conds look up, or returns the
// existing one, safely under concurrency. It is the insert-first form, the
// cheapest when the row usually does not exist yet, and it never opens a
// savepoint on any dialect, inside a transaction or not:
//
//   - PostgreSQL and SQLite: INSERT ... ON CONFLICT DO NOTHING, which
//     cannot fail on the conflict; when it inserted nothing, a read of the
//     existing row.
//   - MySQL/MariaDB: a plain INSERT, whose duplicate-key error rolls back
//     only that statement; then a read of the existing row (a shared locking
//     read inside a transaction, which sees the latest committed row under
//     REPEATABLE READ). ON DUPLICATE KEY UPDATE is not used: even a no-op
//     assignment fires UPDATE triggers; neither is INSERT IGNORE, which turns
//     other errors into warnings.
//
// A conflict never writes to the existing row and fires no UPDATE trigger;
// AfterCreate and AfterSave hooks run only for a row that was created.
//
// The row to create is dest plus the lookup's equalities, as in
// [FindOrCreate]; since the INSERT comes first, every condition must be a
// column equality ([ErrUnsupportedCondition] otherwise). Inside a PostgreSQL
// REPEATABLE READ or SERIALIZABLE transaction, a row committed after the
// snapshot makes the INSERT fail with the server's serialization failure
// (40001), for which [IsRetryable] is true; the transaction must be retried.
func CreateOrFind(tx *gorm.DB, dest any, conds ...any) (created bool, err error) {
	c, err := begin(tx, dest, conds, opCreateOrFind)
	defer func() { c.finish(err) }()
	if err != nil {
		return false, err
	}
	if err := c.probeConditions(); err != nil {
		return false, err
	}
	return c.createOrRead(true)
}
