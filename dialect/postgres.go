package dialect

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// postgres: any failed statement aborts the transaction, so a failing INSERT
// needs a savepoint (a subtransaction); ON CONFLICT DO NOTHING skips without
// one. A REPEATABLE READ or SERIALIZABLE snapshot hides rows committed after
// it was taken from every read, locking reads included.
type postgres struct{}

func (postgres) Name() string                  { return "postgres" }
func (postgres) FailedStatementAbortsTx() bool { return true }

func (postgres) SkipOnConflict() []clause.Expression {
	return []clause.Expression{clause.OnConflict{DoNothing: true}}
}

func (postgres) LatestRead() clause.Expression { return nil }

// SubtransactionCache: each backend caches the xids of 64 subtransactions
// (PGPROC_MAX_CACHED_SUBXIDS). A transaction that keeps more overflows the
// cache, and then, while any snapshot older than it is alive, every reader
// of the database looks subtransactions up in pg_subtrans. A subtransaction
// is kept once it has written, released or not; a rolled back one is not.
func (postgres) SubtransactionCache() int { return 64 }
func (postgres) MaxParams() int           { return 65535 }

// UpsertCreated: a row version that an INSERT created has no xmax; the
// version that ON CONFLICT DO UPDATE writes carries the updater's.
func (postgres) UpsertCreated() *clause.Column {
	return &clause.Column{Name: "(xmax = 0)", Raw: true}
}

func (postgres) UpsertAffectedRows(gorm.Dialector) bool { return false }

// UpsertTable: an ordinary table (relkind 'r'); a partitioned table cannot
// return xmax.
func (postgres) UpsertTable(tx *gorm.DB, table string) (bool, error) {
	schema, name := splitTable(table)
	rel, args := "quote_ident(?)", []any{name}
	if schema != "" {
		rel, args = "quote_ident(?) || '.' || quote_ident(?)", []any{schema, name}
	}
	var kind string
	if err := tx.Raw("SELECT relkind FROM pg_class WHERE oid = to_regclass("+rel+")", args...).Scan(&kind).Error; err != nil {
		return false, err
	}
	return kind == "r", nil
}

// BatchesStatements: an Exec without arguments is a simple query, which may
// hold several statements.
func (postgres) BatchesStatements() bool { return true }

func (postgres) SnapshotHidesCommitted(tx *gorm.DB) (bool, error) {
	var level string
	if err := tx.Raw("SHOW transaction_isolation").Scan(&level).Error; err != nil {
		return false, fmt.Errorf("read transaction_isolation: %w", err)
	}
	level = strings.ToLower(level)
	return level == "repeatable read" || level == "serializable", nil
}

// EndsTx: never silently. A failed statement leaves the transaction
// aborted, and the server itself refuses every later statement (25P02)
// until ROLLBACK.
func (postgres) EndsTx(error) bool { return false }

// RetryStatement: a deadlock or serialization failure of a statement of its
// own.
func (d postgres) RetryStatement(err error) bool { return d.Retryable(err) }

// Retryable: serialization_failure (40001) and deadlock_detected (40P01).
func (postgres) Retryable(err error) bool {
	return Walk(err, func(e error) bool {
		s := sqlState(e)
		return s == "40001" || s == "40P01"
	})
}

// UniqueKeys: pg_index, constraint-backed indexes included (GORM's
// Migrator.GetIndexes leaves out those of UNIQUE and PRIMARY KEY
// constraints). An index on an expression has a 0 in indkey; a partial one
// has indpred; a deferrable constraint's index is not indimmediate, and
// ON CONFLICT cannot use it; an index still being built is not indisvalid.
// Columns past indnkeyatts are INCLUDE columns, not part of the key.
func (postgres) UniqueKeys(tx *gorm.DB, table string) ([][]string, error) {
	schema, name := splitTable(table)
	rel := "quote_ident(?)"
	args := []any{name}
	if schema != "" {
		rel, args = "quote_ident(?) || '.' || quote_ident(?)", []any{schema, name}
	}
	return columnSets(tx.Raw(`SELECT i.indexrelid::text, k.n, a.attname
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = to_regclass(`+rel+`)
		AND i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL
		AND k.n <= i.indnkeyatts AND NOT 0 = ANY (i.indkey)`, args...))
}

// Differs: IS DISTINCT FROM; json has no equality operator, and is compared
// as jsonb (as a value: key order and spaces aside).
func (postgres) Differs(a, b any, dataType string) clause.Expression {
	if strings.EqualFold(dataType, "json") {
		return clause.Expr{SQL: "CAST(? AS jsonb) IS DISTINCT FROM CAST(? AS jsonb)", Vars: []any{a, b}}
	}
	return clause.Expr{SQL: "? IS DISTINCT FROM ?", Vars: []any{a, b}}
}

// MarkMet: none; ON CONFLICT names its target, and RETURNING tells a row
// inserted from one updated (UpsertCreated).
func (postgres) MarkMet(string, clause.Expression, string, []string) (clause.Assignment, clause.Expr, bool) {
	return clause.Assignment{}, clause.Expr{}, false
}

func (postgres) UpdateTriggers(*gorm.DB, string) (bool, error) { return false, nil }

func (postgres) WriteLock() string { return "" }

func (postgres) SelectsAfterInsert() bool { return true }

// MarkMetList: none, as MarkMet.
func (postgres) MarkMetList(string, clause.Expression, string, []string) (clause.Assignment, clause.Expr, bool) {
	return clause.Assignment{}, clause.Expr{}, false
}
