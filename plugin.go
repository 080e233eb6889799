package safefind

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/safefind/safefind/dialect"
	"gorm.io/gorm"
)

// name is the plugin's name in gorm.Config.Plugins.
const name = "safefind"

var _ gorm.Plugin = (*Plugin)(nil)

// Plugin is the safefind GORM plugin. Register it once per *gorm.DB with
// db.Use(safefind.New()); [FindOrCreate] and [CreateOrFind] then work on that
// DB and every session and transaction derived from it. Its counters are
// read with [Plugin.Stats].
type Plugin struct {
	cfg         config
	uniqueCache sync.Map // uniqueKey -> true: covered by a unique index in the catalog
	txs         txStates
	stats       struct {
		savepoints, found, created, conflicts, retries, budgetSwitches, overBudget atomic.Int64
	}
}

type config struct {
	retries     int
	chunk       int
	uniqueGuard bool
	observer    Observer
	budget      int // savepoints per transaction; -1: the dialect's default
	budgetError bool
	// primaryReads keeps the first read off dbresolver's replicas.
	primaryReads bool
}

// Option configures a [Plugin].
type Option func(*config)

// WithRetries sets how many times an INSERT is tried again after it hit a
// unique conflict whose row then could not be found (deleted in between, or a
// conflict on a key the lookup does not cover). The default is 2; after the
// last attempt the call returns [ErrConflictNotFound]. Negative values mean 0.
func WithRetries(n int) Option {
	return func(c *config) { c.retries = max(n, 0) }
}

// WithChunkSize sets the most keys that one statement of [FindOrCreateAll]
// or [CreateOrFindAll] carries (default 1000); the database's bind-parameter
// limit may lower it. Values below 1 mean 1.
func WithChunkSize(n int) Option {
	return func(c *config) { c.chunk = max(n, 1) }
}

// WithUniqueGuard turns the unique-index guard on (the default) or off.
// With the guard on, [FindOrCreate] and [CreateOrFind] refuse with
// [ErrKeyNotUnique], before sending anything, a lookup whose equality
// columns include the columns of no primary key and no unique index, on the
// model or in the database's catalog: concurrent callers would each insert a
// row. Turn it off only for a table whose uniqueness the database enforces
// in a way safefind cannot see (an expression index, a trigger). Batches
// always need a unique key, guard or not: they match rows back by it.
func WithUniqueGuard(on bool) Option {
	return func(c *config) { c.uniqueGuard = on }
}

// New returns a plugin with the options applied over the defaults.
func New(opts ...Option) *Plugin {
	cfg := config{retries: 2, chunk: 1000, uniqueGuard: true, budget: -1}
	for _, o := range opts {
		o(&cfg)
	}
	return &Plugin{cfg: cfg}
}

// Name returns "safefind", the plugin's key in gorm.Config.Plugins.
func (p *Plugin) Name() string { return name }

// Initialize registers safefind's callbacks on db. GORM calls it from
// db.Use; calling it again on the same DB registers nothing twice. It fails
// with [ErrUnsupportedDialect] for a database safefind does not support.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if dialect.For(db.Dialector.Name()) == nil {
		return fmt.Errorf("%w: %q", ErrUnsupportedDialect, db.Dialector.Name())
	}
	cb := db.Callback()
	for _, r := range []struct {
		name string
		get  func(string) func(*gorm.DB)
		add  func(string, func(*gorm.DB)) error
		fn   func(*gorm.DB)
	}{
		{"safefind:guard", cb.Query().Get, cb.Query().Before("gorm:query").Register, p.guard},
		{"safefind:skipped", cb.Create().Get, cb.Create().After("gorm:create").Before("gorm:after_create").Register, skipped},
		{"safefind:count", cb.Create().Get, cb.Create().After("gorm:create").Register, p.count},
		{"safefind:count", cb.Query().Get, cb.Query().After("gorm:query").Register, p.count},
		{"safefind:count", cb.Update().Get, cb.Update().After("gorm:update").Register, p.count},
		{"safefind:count", cb.Delete().Get, cb.Delete().After("gorm:delete").Register, p.count},
		{"safefind:count", cb.Row().Get, cb.Row().After("gorm:row").Register, p.count},
		{"safefind:count", cb.Raw().Get, cb.Raw().After("gorm:raw").Register, p.count},
		{"safefind:before", cb.Create().Get, cb.Create().Before("gorm:create").Register, p.before},
		{"safefind:before", cb.Query().Get, cb.Query().Before("gorm:query").Register, p.before},
		{"safefind:before", cb.Update().Get, cb.Update().Before("gorm:update").Register, p.before},
		{"safefind:before", cb.Delete().Get, cb.Delete().Before("gorm:delete").Register, p.before},
		{"safefind:before", cb.Row().Get, cb.Row().Before("gorm:row").Register, p.before},
		{"safefind:before", cb.Raw().Get, cb.Raw().Before("gorm:raw").Register, p.before},
	} {
		if r.get(r.name) != nil {
			continue
		}
		if err := r.add(r.name, r.fn); err != nil {
			return fmt.Errorf("safefind: register callback %s: %w", r.name, err)
		}
	}
	return nil
}

// Stats are the plugin's cumulative counters, over every DB and session it
// is registered on.
type Stats struct {
	// Savepoints counts SAVEPOINT statements that went through the DB,
	// safefind's own and everyone else's (GORM's nested transactions too).
	Savepoints int64
	// Found counts calls answered with an existing row, on the first read or
	// after losing a race.
	Found int64
	// Created counts calls whose INSERT created the row.
	Created int64
	// Conflicts counts lost races: INSERTs that met a row another caller had
	// created.
	Conflicts int64
	// Retries counts INSERTs tried again: after a conflict whose row could
	// not be found, or, outside a transaction, after losing a deadlock or a
	// Galera certification (up to 5 times).
	Retries int64
	// BudgetSwitches counts FindOrCreate INSERTs that ran without a
	// savepoint, skipping conflicts instead, because their transaction had
	// reached the savepoint budget.
	BudgetSwitches int64
	// OverBudget counts transactions that some statement took past the
	// savepoint budget (or tried to, with WithSavepointBudgetError).
	OverBudget int64
	// TrackedTransactions is how many transactions the plugin holds state
	// for now: those that ran a savepoint or that the database ended, until
	// their *sql.Tx is garbage collected. It does not grow with the number
	// of transactions run.
	TrackedTransactions int64
}

// Stats returns a snapshot of the counters.
func (p *Plugin) Stats() Stats {
	return Stats{
		Savepoints: p.stats.savepoints.Load(),
		Found:      p.stats.found.Load(),
		Created:    p.stats.created.Load(),
		Conflicts:  p.stats.conflicts.Load(),
		Retries:    p.stats.retries.Load(),

		BudgetSwitches: p.stats.budgetSwitches.Load(),
		OverBudget:     p.stats.overBudget.Load(),

		TrackedTransactions: p.txs.n.Load(),
	}
}

// dialectOf returns the dialect of db, nil if safefind does not know it.
func dialectOf(db *gorm.DB) dialect.Dialect { return dialect.For(db.Dialector.Name()) }

// pluginOf returns the plugin registered on db.
func pluginOf(db *gorm.DB) (*Plugin, error) {
	if db == nil || db.Config == nil || db.Statement == nil {
		return nil, fmt.Errorf("%w (nil *gorm.DB)", ErrNotRegistered)
	}
	p, ok := db.Config.Plugins[name].(*Plugin)
	if !ok {
		return nil, ErrNotRegistered
	}
	return p, nil
}

// count runs after every statement GORM executes: it feeds the savepoint
// counter and the [Counter] carried by the statement's context, if any, and
// notes a transaction that the statement's failure ended.
func (p *Plugin) count(db *gorm.DB) {
	if db.DryRun || db.Statement.SQL.Len() == 0 || refused(db.Error) {
		return // a refused statement was not sent
	}
	p.noteEnded(db)
	sql := db.Statement.SQL.String()
	sp := isSavepoint(sql)
	if sp {
		p.stats.savepoints.Add(1)
	}
	if db.Error == nil {
		p.trackSavepoints(db, sql, sp)
	}
	if c, ok := db.Statement.Context.Value(counterKey{}).(*Counter); ok {
		c.statements.Add(1)
		if sp {
			c.savepoints.Add(1)
		}
	}
}

func isSavepoint(sql string) bool {
	sql = strings.TrimLeft(sql, " \t\r\n")
	return len(sql) >= len("SAVEPOINT ") && strings.EqualFold(sql[:len("SAVEPOINT ")], "SAVEPOINT ")
}

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
