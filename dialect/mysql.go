package dialect

import (
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// mysql serves MySQL and MariaDB (GORM names both "mysql"). A failed INSERT
// rolls back only itself, so no savepoint is ever needed. There is no INSERT
// form that skips a conflicting row without side effects: INSERT IGNORE turns
// truncation, NOT NULL and foreign-key errors into warnings, and ON DUPLICATE
// KEY UPDATE, even with a no-op assignment, fires the table's UPDATE
// triggers. So the INSERT is a plain one and a conflict surfaces as error
// 1062, which costs nothing but that statement.
//
// A shared locking read returns the latest committed row even under
// REPEATABLE READ, and shares the lock that the failed INSERT already holds
// on the duplicate entry, so concurrent losers do not deadlock on it (an
// exclusive FOR UPDATE would). GORM renders it as FOR SHARE on MySQL and
// LOCK IN SHARE MODE on MariaDB.
type mysql struct{}

func (mysql) Name() string                        { return "mysql" }
func (mysql) FailedStatementAbortsTx() bool       { return false }
func (mysql) SkipOnConflict() []clause.Expression { return nil }

func (mysql) LatestRead() clause.Expression {
	return clause.Locking{Strength: clause.LockingStrengthShare}
}

func (mysql) SnapshotHidesCommitted(*gorm.DB) (bool, error) { return false, nil }

func (mysql) MaxParams() int { return 65535 }

// UpsertCreated: none in a result set (ON DUPLICATE KEY UPDATE tells by
// its affected rows).
func (mysql) UpsertCreated() *clause.Column { return nil }

func (mysql) UpsertTable(*gorm.DB, string) (bool, error) { return true, nil }

// UpsertAffectedRows: when the dialector was opened from a DSN whose
// clientFoundRows is off (GORM's mysql.Dialector keeps the parsed DSN as
// Config.DSNConfig, a *mysql.Config of go-sql-driver, read here by shape,
// without importing either). Unknown (a dialector given a connection): no.
func (mysql) UpsertAffectedRows(d gorm.Dialector) bool { return foundRowsOff(d) }

// foundRowsOff reports whether d is shaped as GORM's mysql.Dialector with a
// parsed DSN whose ClientFoundRows is false.
func foundRowsOff(d any) bool {
	v := reflect.ValueOf(d)
	for _, name := range []string{"Config", "DSNConfig", "ClientFoundRows"} {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return false
		}
		if v = v.FieldByName(name); !v.IsValid() {
			return false
		}
	}
	return v.Kind() == reflect.Bool && !v.Bool()
}

// BatchesStatements: not unless the DSN sets multiStatements, which safefind
// cannot see.
func (mysql) BatchesStatements() bool { return false }

// SubtransactionCache: InnoDB savepoints are marks in the undo log, with no
// cliff.
func (mysql) SubtransactionCache() int { return 0 }

// RetryStatement: a deadlock or Galera certification failure (1213).
func (d mysql) RetryStatement(err error) bool { return d.EndsTx(err) }

// EndsTx: a deadlock, or a Galera certification failure, rolls back the
// whole transaction (1213). A lock wait timeout (1205) rolls back only the
// statement, unless the server runs with innodb_rollback_on_timeout.
func (mysql) EndsTx(err error) bool {
	return Walk(err, func(e error) bool {
		n, ok := intField(e, "mysql", "MySQLError", "Number")
		return ok && n == 1213
	})
}

// Retryable: deadlock or Galera certification failure (1213), lock wait
// timeout (1205), and MariaDB's "record has changed since last read" (1020),
// raised under innodb_snapshot_isolation.
func (mysql) Retryable(err error) bool {
	return Walk(err, func(e error) bool {
		n, ok := intField(e, "mysql", "MySQLError", "Number")
		return ok && (n == 1213 || n == 1205 || n == 1020)
	})
}

// UniqueKeys: information_schema.STATISTICS. A functional key part (MySQL
// 8) has no COLUMN_NAME and leaves its index out. A prefix part
// (SUB_PART) makes the index stricter than the column, which still keeps
// the column unique.
func (mysql) UniqueKeys(tx *gorm.DB, table string) ([][]string, error) {
	schema, name := splitTable(table)
	db := "DATABASE()"
	args := []any{name}
	if schema != "" {
		db, args = "?", []any{schema, name}
	}
	where := "TABLE_SCHEMA = " + db + " AND TABLE_NAME = ? AND NON_UNIQUE = 0"
	return columnSets(tx.Raw(`SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS
		WHERE `+where+` AND INDEX_NAME NOT IN (
			SELECT INDEX_NAME FROM information_schema.STATISTICS
			WHERE `+where+` AND COLUMN_NAME IS NULL)`, append(args, args...)...))
}

// Differs: <=> is the NULL-safe equality; BINARY compares bytes, not by
// the collation, which takes "a" for "A".
func (mysql) Differs(a, b any, _ string) clause.Expression {
	return clause.Expr{SQL: "NOT (BINARY ? <=> BINARY ?)", Vars: []any{a, b}}
}

// MarkMet: the update's first assignment sets the user variable @sf_met to
// the nonce, whether guard held ('k') or not ('o'), and the row's identity
// (rowIdentity), and writes column back unchanged:
//
//	name = IF((@sf_met := CONCAT_WS(':', nonce, IF(guard, 'k', 'o'), HEX(id))) IS NULL, name, name)
//
// RETURNING is evaluated for each row as it is written, so the flag
// compares @sf_met with what the row's own mark would be. A row the
// statement inserted did not set it: it still holds an earlier row's mark
// (another row's identity) or an earlier statement's (another nonce).
func (mysql) MarkMet(nonce string, guard clause.Expression, column string, row []string) (clause.Assignment, clause.Expr, bool) {
	id := rowIdentity(row)
	mark := clause.Expr{
		SQL:  "IF((@sf_met := CONCAT_WS(':', ?, IF(?, 'k', 'o'), ?)) IS NULL, ?, ?)",
		Vars: []any{nonce, guard, id, clause.Column{Name: column}, clause.Column{Name: column}},
	}
	flag := clause.Expr{
		SQL:  "CASE @sf_met WHEN CONCAT_WS(':', ?, 'k', ?) THEN 1 WHEN CONCAT_WS(':', ?, 'o', ?) THEN 2 ELSE 0 END",
		Vars: []any{nonce, id, nonce, id},
	}
	return clause.Assignment{Column: clause.Column{Name: column}, Value: mark}, flag, true
}

// MarkMetList: the update's first assignment appends ",k" or ",o" and the
// row's identity to @sf_met, which it first resets to the nonce unless the
// variable already starts with it (an earlier statement's list, or none):
//
//	name = IF((@sf_met := CONCAT(IF(LEFT(@sf_met, len) <=> nonce, @sf_met,
//	nonce), ',', IF(guard, 'k', 'o'), HEX(id))) IS NULL, name, name)
//
// The flag, read with the rows after the statement, looks the row up in
// that list; 2 for every row once any row was met where guard did not hold.
func (mysql) MarkMetList(nonce string, guard clause.Expression, column string, row []string) (clause.Assignment, clause.Expr, bool) {
	id := rowIdentity(row)
	mark := clause.Expr{
		SQL:  "IF((@sf_met := CONCAT(IF(LEFT(@sf_met, ?) <=> ?, @sf_met, ?), ',', IF(?, 'k', 'o'), ?)) IS NULL, ?, ?)",
		Vars: []any{len(nonce), nonce, nonce, guard, id, clause.Column{Name: column}, clause.Column{Name: column}},
	}
	flag := clause.Expr{
		SQL: "CASE WHEN NOT (LEFT(@sf_met, ?) <=> ?) THEN 0 WHEN LOCATE(',o', @sf_met) > 0 THEN 2 " +
			"WHEN LOCATE(CONCAT(',k', ?, ','), CONCAT(@sf_met, ',')) > 0 THEN 1 ELSE 0 END",
		Vars: []any{len(nonce), nonce, id},
	}
	return clause.Assignment{Column: clause.Column{Name: column}, Value: mark}, flag, true
}

// rowIdentity is the row's columns, each in hexadecimal (HEX of a number is
// its value's, of anything else its bytes'), joined by ':': no value can
// contain the separator, or the ',' of a list.
func rowIdentity(row []string) clause.Expr {
	if len(row) == 1 {
		return clause.Expr{SQL: "HEX(?)", Vars: []any{clause.Column{Name: row[0]}}}
	}
	parts := make([]string, len(row))
	vars := make([]any, len(row))
	for i, name := range row {
		parts[i] = "HEX(?)"
		vars[i] = clause.Column{Name: name}
	}
	return clause.Expr{SQL: "CONCAT_WS(':', " + strings.Join(parts, ", ") + ")", Vars: vars}
}

func (mysql) WriteLock() string { return "" }

func (mysql) SelectsAfterInsert() bool { return false }

// UpdateTriggers: information_schema.TRIGGERS.
func (mysql) UpdateTriggers(tx *gorm.DB, table string) (bool, error) {
	schema, name := splitTable(table)
	db, args := "DATABASE()", []any{name}
	if schema != "" {
		db, args = "?", []any{schema, name}
	}
	var n int64
	err := tx.Raw("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = "+db+
		" AND EVENT_OBJECT_TABLE = ? AND EVENT_MANIPULATION = 'UPDATE'", args...).Scan(&n).Error
	return n > 0, err
}
