package dialect

import (
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// sqlite: a constraint failure aborts only the statement, ON CONFLICT DO
// NOTHING skips a conflicting row, and a transaction that writes always sees
// the latest data (a stale snapshot cannot write: SQLite answers
// SQLITE_BUSY_SNAPSHOT instead), so reads need no locking clause. GORM's
// SQLite dialector drops row-locking clauses, which SQLite does not have.
type sqlite struct{}

func (sqlite) Name() string                  { return "sqlite" }
func (sqlite) FailedStatementAbortsTx() bool { return false }

func (sqlite) SkipOnConflict() []clause.Expression {
	return []clause.Expression{clause.OnConflict{DoNothing: true}}
}

func (sqlite) LatestRead() clause.Expression                 { return nil }
func (sqlite) SnapshotHidesCommitted(*gorm.DB) (bool, error) { return false, nil }
func (sqlite) MaxParams() int                                { return 32766 }
func (sqlite) BatchesStatements() bool                       { return false }

// UpsertCreated: none; RETURNING shows the row, not what happened to it.
func (sqlite) UpsertCreated() *clause.Column { return nil }

func (sqlite) UpsertTable(*gorm.DB, string) (bool, error) { return true, nil }

// UpsertAffectedRows: no; changes() counts an updated row as one, as an
// inserted one.
func (sqlite) UpsertAffectedRows(gorm.Dialector) bool { return false }

// SubtransactionCache: SQLite savepoints are journal marks, with no cliff.
func (sqlite) SubtransactionCache() int { return 0 }

// RetryStatement: never. SQLITE_BUSY comes after the busy timeout has
// already waited; there are no deadlocks.
func (sqlite) RetryStatement(error) bool { return false }

// EndsTx: SQLITE_BUSY and constraint errors roll back only the statement.
// The errors after which SQLite rolls back a transaction by itself (out of
// memory, disk full, I/O errors) are not ones to carry on after anyway.
func (sqlite) EndsTx(error) bool { return false }

// Retryable: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended
// codes, from mattn/go-sqlite3 (sqlite3.Error) or modernc.org/sqlite
// (*sqlite.Error, through its Code method).
func (sqlite) Retryable(err error) bool {
	return Walk(err, func(e error) bool {
		code, ok := intField(e, "sqlite", "Error", "Code")
		if !ok {
			c, has := e.(interface{ Code() int })
			if !has || !strings.Contains(reflect.TypeOf(e).String(), "sqlite") {
				return false
			}
			code, ok = int64(c.Code()), true
		}
		primary := code & 0xff
		return primary == 5 || primary == 6
	})
}

// UniqueKeys: the primary key (a rowid alias has no index of its own), then
// the unique indexes that are not partial and have no expression column
// (cid -2) or rowid column (cid -1).
func (sqlite) UniqueKeys(tx *gorm.DB, table string) ([][]string, error) {
	schema, name := splitTable(table)
	if schema == "" {
		schema = "main"
	}
	return columnSets(tx.Raw(`SELECT '', pk, name FROM pragma_table_info(?, ?) WHERE pk > 0
		UNION ALL
		SELECT l.name, c.seqno, c.name FROM pragma_index_list(?, ?) l
		JOIN pragma_index_info(l.name, ?) c
		WHERE l."unique" AND NOT l.partial AND NOT EXISTS (
			SELECT 1 FROM pragma_index_info(l.name, ?) x WHERE x.cid < 0)`,
		name, schema, name, schema, schema, schema))
}

// Differs: IS NOT compares NULLs as values.
func (sqlite) Differs(a, b any, _ string) clause.Expression {
	return clause.Expr{SQL: "? IS NOT ?", Vars: []any{a, b}}
}

// MarkMet: none; ON CONFLICT names its target.
func (sqlite) MarkMet(string, clause.Expression, string, []string) (clause.Assignment, clause.Expr, bool) {
	return clause.Assignment{}, clause.Expr{}, false
}

func (sqlite) UpdateTriggers(*gorm.DB, string) (bool, error) { return false, nil }

// WriteLock: a DELETE of no row begins a write transaction, which waits on
// the busy timeout for the lock (a read first would make a later write
// fail with SQLITE_BUSY_SNAPSHOT once another connection wrote).
func (sqlite) WriteLock() string { return "DELETE FROM ? WHERE 1 = 0" }

func (sqlite) SelectsAfterInsert() bool { return false }

// MarkMetList: none, as MarkMet.
func (sqlite) MarkMetList(string, clause.Expression, string, []string) (clause.Assignment, clause.Expr, bool) {
	return clause.Assignment{}, clause.Expr{}, false
}
