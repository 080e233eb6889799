// Package dialect describes, per database, the capabilities safefind's
// find-or-create paths depend on. safefind branches on these capabilities,
// never on dialect names; each dialect lives in a file of its own.
//
// A dialect chooses GORM clause values (clause.OnConflict, clause.Locking);
// GORM's own clause builders render them for the connected server.
package dialect

import (
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Dialect is what safefind needs to know about one database.
type Dialect interface {
	// Name is the GORM dialector name this dialect serves ("postgres", "mysql", "sqlite").
	Name() string

	// FailedStatementAbortsTx reports whether any failed statement aborts the
	// enclosing transaction, so that an INSERT which may fail on a unique
	// conflict must run inside a savepoint to keep the caller's transaction
	// usable. Where it is false, a failed statement rolls back only itself.
	FailedStatementAbortsTx() bool

	// SkipOnConflict returns the clauses that make an INSERT skip a row that
	// conflicts with an existing one instead of failing, without writing to the
	// existing row (so no UPDATE trigger fires). It returns nil where the
	// dialect has no such clause: the INSERT then fails with a duplicate-key
	// error, and FailedStatementAbortsTx must be false for that dialect.
	SkipOnConflict() []clause.Expression

	// LatestRead returns the locking clause that makes a read inside a
	// transaction return the latest committed version of a row, whatever the
	// transaction's snapshot; nil where no locking read does that, or none is
	// needed.
	LatestRead() clause.Expression

	// SnapshotHidesCommitted reports whether the current transaction of tx
	// reads from a snapshot that can hide rows committed after it began, even
	// through LatestRead. It may ask the server; it is called only on the rare
	// path where a conflicting row could not be read.
	SnapshotHidesCommitted(tx *gorm.DB) (bool, error)

	// SubtransactionCache is how many subtransactions one transaction may
	// keep before every reader of the database pays for them; 0 where
	// savepoints have no such cliff.
	SubtransactionCache() int

	// MaxParams is the most bind parameters one statement may carry.
	MaxParams() int

	// UpsertCreated returns the column that a RETURNING clause adds to an
	// INSERT ... ON CONFLICT DO UPDATE to tell the row it inserted (true)
	// from the row it updated; nil where the dialect has none, and such an
	// upsert cannot report created exactly.
	UpsertCreated() *clause.Column

	// UpsertTable reports whether table can return UpsertCreated's column
	// (a PostgreSQL partitioned table cannot return a system column). It
	// may read the catalog; the caller caches the answer.
	UpsertTable(tx *gorm.DB, table string) (bool, error)

	// UpsertAffectedRows reports whether, on the connections that d opens,
	// an INSERT ... ON DUPLICATE KEY UPDATE tells exactly what it did by
	// its affected rows: 1 inserted, 2 updated, 0 left unchanged
	// (MySQL/MariaDB without CLIENT_FOUND_ROWS, which counts an unchanged
	// row as 1). False where it cannot tell, or the dialect has no such
	// statement.
	UpsertAffectedRows(d gorm.Dialector) bool

	// Differs returns a condition true when a and b, two values of a column
	// of GORM's dataType, differ, a NULL being a value like any other: IS
	// DISTINCT FROM, or the dialect's spelling of it.
	Differs(a, b any, dataType string) clause.Expression

	// MarkMet is for a dialect whose upsert (ON DUPLICATE KEY UPDATE) names
	// no conflict target: it updates the row it meets by any unique key.
	// It returns the assignment to put first in the update, which marks the
	// row met without changing it, and the expression that a RETURNING
	// clause reads the mark with, row by row: 0 for a row the statement
	// inserted, 1 for a row it met where guard held, 2 for a row it met
	// where guard did not (another unique key). row names columns that
	// tell the rows apart (the primary key); nonce makes this statement's
	// marks differ from any earlier one on the connection. ok is false
	// where the upsert names its conflict target (ON CONFLICT (...)).
	// The mark writes column back as it is: not the auto-increment primary
	// key, whose assignment, even unchanged, moves the statement's next id
	// past the row met, out of the interval it reserved, so that a later
	// row of the statement meets a concurrent INSERT's row by its id.
	MarkMet(nonce string, guard clause.Expression, column string, row []string) (mark clause.Assignment, flag clause.Expr, ok bool)

	// MarkMetList is MarkMet for a server without RETURNING: the marks of
	// the rows met collect in a list, in the session, and flag, selected
	// with the rows once the statement ran, reads it, row by row: 0 for a
	// row the statement did not meet, 1 for a row it met where guard held,
	// 2 for every row if it met any row where guard did not.
	MarkMetList(nonce string, guard clause.Expression, column string, row []string) (mark clause.Assignment, flag clause.Expr, ok bool)

	// SelectsAfterInsert reports whether an INSERT ... RETURNING can be a
	// WITH query that the statement's own SELECT reads (PostgreSQL), so
	// that one statement inserts a row or reads the existing one.
	SelectsAfterInsert() bool

	// WriteLock returns a statement that takes the database's write lock for
	// the transaction it runs in and writes nothing, where the database has
	// one writer at a time (SQLite): from then on no other connection can
	// change a row the transaction reads. Its one parameter is the table.
	// "" where writers lock rows.
	WriteLock() string

	// UpdateTriggers reports whether table has an UPDATE trigger, read from
	// the catalog (where MarkMet is ok: a marked upsert fires them even for
	// a row it leaves unchanged). table may be qualified by its schema.
	UpdateTriggers(tx *gorm.DB, table string) (bool, error)

	// BatchesStatements reports whether an Exec without arguments may hold
	// several statements separated by semicolons, sent in one round trip
	// (PostgreSQL's simple query protocol); without prepared statements.
	BatchesStatements() bool

	// UniqueKeys reads from the catalog the column sets of table's primary
	// key and of its unique indexes and constraints that hold for every row:
	// not partial, not on an expression, not deferred. table may be
	// qualified by its schema ("schema.table").
	UniqueKeys(tx *gorm.DB, table string) ([][]string, error)

	// RetryStatement reports whether a statement that failed with err
	// outside a transaction may be sent again at once: it lost a deadlock,
	// a serialization conflict or a certification. Not a lock-wait or busy
	// timeout: those already waited as long as the user allows.
	RetryStatement(err error) bool

	// EndsTx reports whether err, from a statement inside a transaction,
	// means the database rolled back the whole transaction while the
	// connection goes on, outside any transaction, in autocommit.
	EndsTx(err error) bool

	// Retryable reports whether err, from this database's driver, means the
	// whole transaction should be retried: a serialization failure, a
	// deadlock, a lock-wait timeout, a busy database.
	Retryable(err error) bool
}

var dialects = []Dialect{postgres{}, mysql{}, sqlite{}}

// For returns the dialect for a GORM dialector name, or nil if safefind does
// not support that database.
func For(name string) Dialect {
	for _, d := range dialects {
		if d.Name() == name {
			return d
		}
	}
	return nil
}

// All returns every supported dialect.
func All() []Dialect {
	return append([]Dialect(nil), dialects...)
}

// Walk calls fn for err and every error it wraps, depth first, through both
// Unwrap() error and Unwrap() []error, until fn returns true. It reports
// whether fn did.
func Walk(err error, fn func(error) bool) bool {
	for err != nil {
		if fn(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if Walk(e, fn) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return false
		}
	}
	return false
}

// intField returns the integer field name of the struct err is or points to,
// when err's type is named typeName in a package whose path contains pkg.
// Drivers are not imported by safefind, so their error types are read by
// shape.
func intField(err error, pkg, typeName, name string) (int64, bool) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	t := v.Type()
	if v.Kind() != reflect.Struct || t.Name() != typeName || !strings.Contains(t.PkgPath(), pkg) {
		return 0, false
	}
	f := v.FieldByName(name)
	switch f.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return f.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(f.Uint()), true
	}
	return 0, false
}

// sqlState returns the SQLSTATE of err itself, not of the errors it wraps
// (pgx's *pgconn.PgError and lib/pq's *pq.Error have one); "" for a nil
// pointer, whose SQLState method may not accept a nil receiver.
func sqlState(err error) string {
	s, ok := err.(interface{ SQLState() string })
	if !ok {
		return ""
	}
	if v := reflect.ValueOf(err); v.Kind() == reflect.Pointer && v.IsNil() {
		return ""
	}
	return s.SQLState()
}

// columnSets reads rows of (key, position, column) into the columns of
// each key, in position order, whatever the order of the rows.
func columnSets(tx *gorm.DB) ([][]string, error) {
	rows, err := tx.Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type part struct {
		pos    int
		column string
	}
	var keys []string
	parts := map[string][]part{}
	for rows.Next() {
		var (
			key string
			p   part
		)
		if err := rows.Scan(&key, &p.pos, &p.column); err != nil {
			return nil, err
		}
		if _, seen := parts[key]; !seen {
			keys = append(keys, key)
		}
		parts[key] = append(parts[key], p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sets := make([][]string, len(keys))
	for i, key := range keys {
		ps := parts[key]
		slices.SortFunc(ps, func(a, b part) int { return a.pos - b.pos })
		for _, p := range ps {
			sets[i] = append(sets[i], p.column)
		}
	}
	return sets, nil
}

// splitTable splits "schema.table" into its schema ("" if none) and table.
func splitTable(table string) (schema, name string) {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		return table[:i], table[i+1:]
	}
	return "", table
}
