package safefind

import (
	"context"
	"sync/atomic"
)

// Counter counts the statements and savepoints of one unit of work: every
// statement GORM runs with a context that carries the counter (see
// [WithCounter]), through any DB the plugin is registered on. Counters of
// different contexts never mix, so tests that run in parallel can each assert
// their own budget. BEGIN, COMMIT and ROLLBACK are not counted: GORM sends
// them to the driver directly, not as statements. A Counter is safe for
// concurrent use; its zero value is ready.
type Counter struct {
	statements, savepoints atomic.Int64
}

type counterKey struct{}

// WithCounter returns a copy of ctx that carries c. Run GORM calls with
// db.WithContext(ctx) to have them counted.
func WithCounter(ctx context.Context, c *Counter) context.Context {
	return context.WithValue(ctx, counterKey{}, c)
}

// Statements returns how many statements have been counted.
func (c *Counter) Statements() int64 { return c.statements.Load() }

// Savepoints returns how many SAVEPOINT statements have been counted.
func (c *Counter) Savepoints() int64 { return c.savepoints.Load() }
