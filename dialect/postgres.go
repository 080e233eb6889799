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
func (postgres) MaxParams() int                { return 65535 }

func (postgres) SnapshotHidesCommitted(tx *gorm.DB) (bool, error) {
	var level string
	if err := tx.Raw("SHOW transaction_isolation").Scan(&level).Error; err != nil {
		return false, fmt.Errorf("read transaction_isolation: %w", err)
	}
	level = strings.ToLower(level)
	return level == "repeatable read" || level == "serializable", nil
}

// Retryable: serialization_failure (40001) and deadlock_detected (40P01).
func (postgres) Retryable(err error) bool {
	switch sqlState(err) {
	case "40001", "40P01":
		return true
	}
	return false
}
