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
// filter the reads.
//
// The chain's Attrs and Assign work as with FirstOrCreate: Attrs are set on
// the row to create only; Assign on the row to create, and a row that
// exists (found, or created by another caller first) is updated with them
// as FirstOrCreate updates it (GORM's Updates: update hooks, UpdatedAt),
// dest holding the row as updated. Associations set on dest (or by Attrs
// and Assign) are saved with a row this call creates, as Create saves them,
// in a transaction or savepoint of their own: a call that finds the row, or
// loses the race, leaves none of them behind (but for what Assign's UPDATE
// saves, as FirstOrCreate's Updates does). On a hit dest gets the row's
// columns; its other fields keep their values. What FirstOrCreate would
// silently drop is refused: see [ErrInvalidAttributes].
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
	row, found, err := c.find(false)
	if err != nil {
		return false, err
	}
	pl := c.planFailing()
	if found {
		if found, err = c.settle(pl, row); err != nil {
			return false, err
		}
	}
	if found {
		c.record(EventFound, 1)
		return false, nil
	}
	return c.writeOne(pl) // a miss, or a row deleted before its update
}

// CreateOrFind creates the row that tx and conds look up, or returns the
// existing one, safely under concurrency. It is the insert-first form, the
// cheapest when the row usually does not exist yet, and it never opens a
// savepoint on any dialect, inside a transaction or not:
//
//   - PostgreSQL: one statement, WITH ins AS (INSERT ... ON CONFLICT DO
//     NOTHING RETURNING *) SELECT the row inserted, or the lookup's row;
//     sent again when a winner committed while it waited (its snapshot
//     cannot show that row). A model with create hooks or AfterFind, soft
//     delete, or a lookup with more than a WHERE takes SQLite's two.
//   - SQLite: INSERT ... ON CONFLICT DO NOTHING, which cannot fail on the
//     conflict; when it inserted nothing, a read of the existing row.
//   - MySQL/MariaDB: a plain INSERT, whose duplicate-key error rolls back
//     only that statement; then a read of the existing row (a shared locking
//     read inside a transaction, which sees the latest committed row under
//     REPEATABLE READ). ON DUPLICATE KEY UPDATE is not used without Assign:
//     even a no-op assignment fires UPDATE triggers; neither is INSERT
//     IGNORE, which turns other errors into warnings.
//
// A conflict never writes to the existing row and fires no UPDATE trigger,
// unless the chain has Assign, whose UPDATE then follows the read (for a
// model without hooks or associations and a chain without Select or Omit,
// INSERT and UPDATE are one statement: on PostgreSQL INSERT ... ON
// CONFLICT DO UPDATE ... WHERE the lookup RETURNING, or inside a
// transaction a WITH query of an INSERT that skips any conflict and an
// UPDATE of the lookup's row; on MySQL/MariaDB INSERT ... ON DUPLICATE KEY
// UPDATE guarded by the lookup, then a read; created exact);
// AfterCreate and AfterSave hooks run only for a row that was created.
// Associations to save need a savepoint inside a transaction.
//
// The row to create is dest plus the lookup's equalities, Attrs and Assign,
// as in [FindOrCreate]; since the INSERT comes first, every condition must be a
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
	return c.writeOne(c.planSkipping())
}

// FindOrCreateAll finds or creates one row per element of rows, a pointer to
// a slice of model structs (or of pointers to them), by the key columns
// named (field or column names; one or more, a composite key included),
// in one round trip per chunk and each step:
//
//  1. one SELECT for all the keys of a chunk;
//  2. one INSERT of the missing rows, sorted by key, that skips the rows
//     another caller created meanwhile (ON CONFLICT DO NOTHING RETURNING on
//     PostgreSQL and SQLite; on MariaDB 10.5+, on a table without an UPDATE
//     trigger, ON DUPLICATE KEY UPDATE of no column RETURNING each row with
//     a marker of what the statement did; otherwise on MySQL/MariaDB a plain
//     multi-row INSERT, all or nothing, tried again without the rows found
//     after a conflict);
//  3. one SELECT for the rows that lost a race (a shared locking read inside
//     a MySQL/MariaDB transaction).
//
// Rows are inserted in key order, so concurrent batches with overlapping
// keys lock them in the same order and cannot deadlock on each other. No
// savepoint is opened, on any dialect.
//
// Each element carries its key values and the attributes to create it with;
// the chain's equalities (tx.Where(...)) and Attrs are set on every row
// created, and its conditions and locking clause apply to the reads. A chain
// with Assign makes the call an upsert of Assign's columns, as [UpsertAll]
// (Assign's values set on every row, created or existing; a row that already
// holds them is not rewritten); its conditions must then be column
// equalities. After the call every
// element holds its stored row, in the caller's order; duplicates of one key
// all receive the same row. created is aligned with rows: true for the
// elements whose row this call inserted (the first element of each key).
// Hooks run as for Create: BeforeSave and BeforeCreate on the rows to insert,
// AfterCreate and AfterSave on the rows created.
//
// Chunks hold at most [WithChunkSize] keys (default 1000), fewer where the
// database's bind-parameter limit requires. An empty slice sends nothing.
// The key must be covered by a primary key or unique index, declared on the
// model or found in the database's catalog, or the call fails with
// [ErrKeyNotUnique]. Errors are as for [FindOrCreate]; on an error the
// elements are left as they were.
func FindOrCreateAll(tx *gorm.DB, rows any, keyColumns ...string) (created []bool, err error) {
	return writeAll(tx, rows, keyColumns, opFindOrCreateAll, nil)
}

// CreateOrFindAll is the insert-first form of [FindOrCreateAll], for keys
// that are usually new: one INSERT of all the rows of a chunk that skips the
// existing ones, then one SELECT for those. Where MySQL/MariaDB take a
// plain multi-row INSERT (see [FindOrCreateAll]), which fails whole on a
// conflict, a conflict is followed by the steps of FindOrCreateAll. No savepoint is opened, on any dialect. As with
// [CreateOrFind], the chain may carry only column equalities.
func CreateOrFindAll(tx *gorm.DB, rows any, keyColumns ...string) (created []bool, err error) {
	return writeAll(tx, rows, keyColumns, opCreateOrFindAll, nil)
}

// UpsertAll inserts each element of rows, or gives the existing row with
// its key the element's updateColumns, safely under concurrency: rows is a
// pointer to a slice of model structs (or of pointers to them), as
// [FindOrCreateAll] takes, and keyColumns (field or column names) must be
// covered by a primary key or unique index ([ErrKeyNotUnique] otherwise).
//
// updateColumns are field or column names; none means every column the
// INSERT writes but the key, the primary key, the chain's equalities and
// the create-time columns (CreatedAt). GORM's UpdatedAt moves when one of
// them changes. A name that is not a column is [ErrUnknownColumn]; a key
// column, the primary key or a field GORM does not update is
// [ErrInvalidColumns]; both are refused before anything is sent.
//
// After the call every element holds its stored row (id, defaults, the
// values updated), matched by key, never by position, and created[i] is
// true exactly for the elements whose row this call inserted. Elements
// with one key and identical values share one row; with different values
// the call fails with [ErrConflictingDuplicates]. The chain may carry only
// column equalities: they are set on every row inserted, and a row that
// has the key but not the chain's values is not updated (the call fails
// with [ErrConflictNotFound]).
//
// A row whose values are already the ones given is not rewritten: on
// PostgreSQL and SQLite the conflict update has a WHERE that one of the
// columns differs (no new row version, no UPDATE trigger, UpdatedAt
// unchanged). On MySQL/MariaDB the row keeps its values and UpdatedAt too,
// but the server fires its UPDATE triggers for every row met.
//
// Rows are sent sorted by key, in chunks of [WithChunkSize] within the
// bind-parameter limit, one statement per chunk plus a read of the rows
// the statement did not return, with no savepoint on any dialect:
//
//   - PostgreSQL: INSERT ... ON CONFLICT (key) DO UPDATE SET ... WHERE (a
//     column differs) RETURNING *, (xmax = 0); a partitioned table, which
//     cannot return xmax, takes two: an INSERT that locks the existing
//     rows and returns the rows it inserted, then the upsert of the others.
//   - MariaDB 10.5+: INSERT ... ON DUPLICATE KEY UPDATE, each assignment
//     guarded by the row's key and the chain's equalities, so that a row
//     met by another unique key is never changed (the call fails),
//     RETURNING * and a per-row marker of what the statement did. MySQL 8,
//     without RETURNING: the statement, then a locking read of the rows
//     with their markers.
//   - SQLite, one writer at a time: under the write lock, a read of the
//     ids by key, then the upsert; a row returned that the read did not
//     find was inserted.
//
// Outside a transaction the call opens one of its own, so that an error
// leaves nothing behind (one that loses a deadlock runs again); inside
// yours, roll it back on an error.
//
// Hooks: BeforeSave and BeforeCreate run on every row sent, AfterCreate and
// AfterSave on the rows created; update hooks do not run (as with GORM's
// Create and OnConflict). Associations are not saved (refused, as in the
// other batch calls). Concurrent UpsertAll calls on overlapping keys do not
// deadlock on each other: they lock the keys in the same order. Errors are
// as for [FindOrCreateAll]; on an error the elements are left as they were.
func UpsertAll(tx *gorm.DB, rows any, keyColumns []string, updateColumns ...string) (created []bool, err error) {
	return writeAll(tx, rows, keyColumns, opUpsertAll, updateColumns)
}
