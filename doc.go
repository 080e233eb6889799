// Package safefind is a GORM plugin that makes find-or-create safe under
// concurrency on PostgreSQL, MySQL/MariaDB and SQLite, without paying for
// savepoints it does not need.
//
// # The problem
//
// GORM's FirstOrCreate is a SELECT followed by an INSERT. Two callers racing
// on one key both miss, and one INSERT fails with a duplicate-key error; on
// PostgreSQL that error also aborts the caller's transaction. The usual cure
// wraps every INSERT in a savepoint, but on PostgreSQL each savepoint is a
// subtransaction, and past 64 of them in one transaction every reader of the
// database slows down (pg_subtrans lookups).
//
// # Use
//
// Register the plugin once, then call [FindOrCreate] or [CreateOrFind] where
// you would call FirstOrCreate:
//
//	db.Use(safefind.New())
//	var tag Tag
//	created, err := safefind.FindOrCreate(db.WithContext(ctx), &tag, Tag{Name: "go"})
//
// [FindOrCreate] reads first and suits rows that usually exist: a hit is one
// plain SELECT. [CreateOrFind] inserts first and suits rows that usually do
// not: a miss is one INSERT, and it never opens a savepoint. Both return the
// winner's row to every caller that lost the race, with created false, and
// created true to exactly one caller.
//
// # Attrs, Assign and associations
//
// A FirstOrCreate chain moves to safefind as it is: the chain's Attrs are set
// on the row to create only, its Assign on the row to create and on a row
// that exists, which is updated as FirstOrCreate updates it:
//
//	// db.Where(User{Email: e}).Attrs(User{Name: n}).Assign(User{Plan: p}).FirstOrCreate(&u)
//	created, err := safefind.FindOrCreate(db.Where(User{Email: e}).Attrs(User{Name: n}).Assign(User{Plan: p}), &u)
//
// Associations on dest are saved with a row the call creates, atomically;
// with a row it finds only by Assign's UPDATE, as FirstOrCreate's Updates
// saves them. What FirstOrCreate would silently drop (an unknown column, a
// condition or an expression in Attrs or Assign) is refused with
// [ErrUnknownColumn] or [ErrInvalidAttributes] before anything is written.
//
// # Batches and upserts
//
// [FindOrCreateAll] and [CreateOrFindAll] find or create many rows by a key,
// in one round trip per step and chunk; [UpsertAll] inserts rows or updates
// the existing ones with their key. All three sort the rows by key, so that
// concurrent batches do not deadlock on each other, match the rows the
// database returns to the elements by key, never by position, and report
// created exactly, row by row, on every dialect. A batch chain's Attrs are
// set on the rows created; its Assign makes the batch an upsert of
// Assign's columns.
//
// # Guarantees
//
// No duplicate-key error reaches the caller, a conflict never writes to the
// existing row (no UPDATE trigger fires) unless the chain has Assign, which
// updates the lookup's row and no other, the caller's transaction stays
// usable after a lost race, and a savepoint is opened only by FindOrCreate
// inside a PostgreSQL transaction on a miss. Inside a REPEATABLE READ or
// SERIALIZABLE PostgreSQL transaction whose snapshot predates the winner's
// commit, the row cannot be seen; the error then satisfies [IsRetryable], and
// the caller retries its transaction.
//
// # Retrying transactions
//
// [RetryTransaction] runs a function in a transaction and runs it again, with
// jittered exponential backoff and within the context's deadline, when it
// fails with an error for which [IsRetryable] is true: a serialization
// failure, a deadlock, a Galera certification failure, a busy SQLite
// database, [ErrStaleSnapshot]. It is how to use safefind under REPEATABLE
// READ or SERIALIZABLE, and through MySQL/MariaDB deadlocks. After such a
// deadlock InnoDB has rolled the transaction back while the connection goes
// on in autocommit; the plugin then refuses every later statement on that
// transaction with [ErrTransactionEnded], so nothing is committed outside it.
//
// # The savepoint budget
//
// Per transaction, the plugin follows the savepoints that pass through the
// *gorm.DB, everyone's. [FindOrCreate] never takes a transaction past the
// budget ([WithSavepointBudget]; by default 64 on PostgreSQL, the size of a
// backend's subtransaction cache, and none elsewhere): at the budget its
// INSERT skips conflicts instead of opening a savepoint. A SAVEPOINT that
// takes a transaction past the budget is logged once with the caller's
// file:line, or refused with [ErrSavepointBudget]
// ([WithSavepointBudgetError]).
//
// # The unique-index guard
//
// A lookup is race-safe only if a unique constraint covers it: some primary
// key or unique index whose columns are all among the lookup's equality
// columns. Otherwise concurrent callers each insert a row. Such lookups are
// refused with [ErrKeyNotUnique] before anything is sent, judged from the
// model and, for unique keys the model does not declare, the database's
// catalog (until it shows the key covered, an answer cached per table and
// column set). [WithUniqueGuard] turns it off.
//
// # Read replicas
//
// With GORM's dbresolver plugin, a replica may serve the first read of
// FindOrCreate and FindOrCreateAll. Everything after a miss goes to the
// primary (the INSERT, the read of a conflict's winner, which a lagging
// replica would not show), as do CreateOrFind's reads, the guard's catalog
// read and everything in a transaction. [WithPrimaryReads] sends the first
// read to the primary too.
//
// # Counting and observing
//
// [Plugin.Stats] counts savepoints (everyone's, GORM's nested transactions
// included), rows found and created, lost races and retries. An observer
// ([WithObserver]) receives every outcome as an [Event], with its table,
// duration and error, to feed metrics and traces. A [Counter],
// carried by a context ([WithCounter]), counts the statements and savepoints
// of one unit of work, so a test can assert that a code path opened no
// subtransaction.
//
// # DryRun
//
// On a session with DryRun, FindOrCreate and CreateOrFind build and log the
// statements of their longest path (the lookup, the savepoint where there is
// one, the INSERT, the read of the winner's row) without sending any, not
// even the BEGIN of GORM's default transaction for a model with hooks, and
// return false and no error.
//
// # Errors
//
// Bad input is refused before anything is sent, with [ErrInvalidDest],
// [ErrNoConditions], [ErrUnknownColumn], [ErrUnsupportedCondition],
// [ErrKeyNotUnique] or [ErrNotRegistered]; a conflict whose row cannot be found gives
// [ErrConflictNotFound]; database errors are wrapped. Use [errors.Is].
package safefind
