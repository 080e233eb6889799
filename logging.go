package safefind

import (
	"context"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// quietConflicts keeps a lost race out of the error log: the INSERT is traced
// like any statement, but its expected duplicate-key error is not logged as
// an error.
type quietConflicts struct {
	logger.Interface
	dialector gorm.Dialector
}

func (q quietConflicts) LogMode(l logger.LogLevel) logger.Interface {
	return quietConflicts{q.Interface.LogMode(l), q.dialector}
}

// ParamsFilter keeps the caller's logger's filter (ParameterizedQueries) in
// force.
func (q quietConflicts) ParamsFilter(ctx context.Context, sql string, params ...any) (string, []any) {
	if f, ok := q.Interface.(gorm.ParamsFilter); ok {
		return f.ParamsFilter(ctx, sql, params...)
	}
	return sql, params
}

func (q quietConflicts) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if isDuplicate(q.dialector, err) {
		err = nil
	}
	q.Interface.Trace(ctx, begin, fc, err)
}

// silent is a logger that drops GORM's trace of the DryRun that renders a
// batch INSERT: the statement is traced when it is sent.
type silent struct{ logger.Interface }

func (silent) Trace(context.Context, time.Time, func() (string, int64), error) {}
