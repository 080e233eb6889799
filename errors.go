package safefind

import (
	"errors"

	"github.com/safefind/safefind/dialect"
	"gorm.io/gorm"
)

// Errors returned by safefind. Each is wrapped with details; test for them
// with [errors.Is]. Database errors are returned wrapped with %w as well, so
// [errors.As] reaches the driver's own error type.
var (
	// ErrNotRegistered: the *gorm.DB passed in (or nil) has no safefind
	// plugin; call db.Use(safefind.New()) first.
	ErrNotRegistered = errors.New("safefind: plugin not registered on this *gorm.DB")

	// ErrUnsupportedDialect: Initialize was given a database safefind does not
	// know (only postgres, mysql and sqlite are supported).
	ErrUnsupportedDialect = errors.New("safefind: unsupported dialect")

	// ErrInvalidDest: dest is not a non-nil pointer to a struct of the model
	// being queried.
	ErrInvalidDest = errors.New("safefind: dest must be a non-nil pointer to a model struct")

	// ErrNoConditions: the lookup has no condition at all, or a condition GORM
	// would silently drop (a struct whose fields are all zero values). Plain
	// FirstOrCreate would then return an arbitrary row.
	ErrNoConditions = errors.New("safefind: the lookup has no conditions")

	// ErrUnknownColumn: an equality condition names a column that is not a
	// field of the model, or a field GORM does not write on create (tagged
	// "->" or "<-:false"), so the row to create could not satisfy it.
	ErrUnknownColumn = errors.New("safefind: condition on a column that is not a field of the model")

	// ErrUnsupportedCondition: a condition safefind cannot honour. For both
	// calls: a value its column cannot take, one column given two different
	// values, a nil condition, a condition GORM cannot build, a table
	// expression with a subquery. For CreateOrFind also any condition that is
	// not a column equality (a range, an OR, an IN of several values, IS NULL,
	// SQL other than "col = ?"): its INSERT comes first and could not honour
	// it; use FindOrCreate, or set the field on dest.
	ErrUnsupportedCondition = errors.New("safefind: unsupported condition")

	// ErrInvalidAttributes: the chain's Attrs or Assign give what safefind
	// cannot store as FirstOrCreate would: a condition that is not
	// column = value (GORM would ignore it), a value its field cannot take,
	// a value for one of the lookup's equality columns other than the
	// lookup's (the row would leave the lookup); on a batch call, a value
	// for a key column, Assign of an association or on a model with update
	// hooks (a batch's Assign is an upsert, which runs none), and Attrs or
	// Assign on UpsertAll. A column that is not a field of the model is
	// [ErrUnknownColumn]. Nothing is written.
	ErrInvalidAttributes = errors.New("safefind: Attrs or Assign cannot be applied")

	// ErrInvalidColumns: UpsertAll's update columns name a column it
	// cannot update: a key column (the key finds the row), the primary key,
	// or a field GORM writes only on create or never (tagged "<-:create",
	// "->" or "-"). A name that is not a column of the model is
	// [ErrUnknownColumn]. Nothing is written.
	ErrInvalidColumns = errors.New("safefind: invalid update columns")

	// ErrConflictingDuplicates: UpsertAll's rows hold one key twice with
	// different values: which one should be stored is not clear. Identical
	// duplicates share one row. (The other batch calls insert the first
	// element of a key, as FirstOrCreate row by row would.) Nothing is
	// written.
	ErrConflictingDuplicates = errors.New("safefind: two rows have one key and different values")

	// ErrUnsupportedGORM: the GORM this program is built with keeps the
	// chain's Attrs and Assign where safefind cannot read them; Initialize
	// refuses it rather than ignore them.
	ErrUnsupportedGORM = errors.New("safefind: this GORM version is not supported")

	// ErrKeyNotUnique: no primary key or unique index, neither on the model
	// nor in the database's catalog, has all its columns among the lookup's
	// equality columns (for a batch: its key columns and the chain's
	// equalities). Concurrent callers would each insert a row, and nothing
	// could detect it. Partial unique indexes do not count. For single-row
	// calls, [WithUniqueGuard](false) lets such lookups through.
	ErrKeyNotUnique = errors.New("safefind: the lookup is not covered by a unique index")

	// ErrConflictNotFound: the INSERT hit a unique conflict, yet no row
	// matches the lookup, on every attempt allowed by [WithConflictRetries].
	// Either the conflicting row is deleted as fast as it is created, or the
	// conflict is on a unique key the lookup does not cover (a soft-deleted
	// row, a second unique column). The message names the likely cause; one
	// that the row to create shows is reported at once, not tried again: a
	// primary key it carries beyond the lookup's (left on dest by an earlier
	// call), a lookup column a BeforeCreate hook changed. The database's
	// duplicate-key error, when there is one (a plain INSERT's; ON CONFLICT
	// DO NOTHING reports none), is wrapped too, and names the key.
	ErrConflictNotFound = errors.New("safefind: insert conflicted but no row matches the lookup")

	// ErrStaleSnapshot: another transaction committed the row after this
	// transaction's snapshot was taken (REPEATABLE READ or SERIALIZABLE on
	// PostgreSQL), so this transaction cannot see it. The transaction is still
	// usable but must be retried to see the row; [IsRetryable] reports true.
	ErrStaleSnapshot = errors.New("safefind: the row exists but this transaction's snapshot cannot see it; retry the transaction")
)

// IsRetryable reports whether err means the caller should roll back and run
// its whole transaction again: a serialization failure or deadlock on
// PostgreSQL (40001, 40P01), a deadlock, Galera certification failure or
// lock-wait timeout on MySQL/MariaDB (1213, 1205, and MariaDB's 1020),
// SQLITE_BUSY or SQLITE_LOCKED on SQLite, and [ErrStaleSnapshot]. A retry
// of the same statement inside the same transaction would not help.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrStaleSnapshot) {
		return true
	}
	for _, d := range dialect.All() {
		if d.Retryable(err) {
			return true
		}
	}
	return false
}

// isDuplicate reports whether err is a unique violation, whether or not the
// user enabled TranslateError: the dialector's own translator recognises its
// driver's error without safefind importing the driver.
func isDuplicate(d gorm.Dialector, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	t, ok := d.(gorm.ErrorTranslator)
	if !ok {
		return false
	}
	return dialect.Walk(err, func(e error) bool {
		return errors.Is(t.Translate(e), gorm.ErrDuplicatedKey)
	})
}
