package safefind

import (
	"fmt"
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
	uniqueCache sync.Map // uniqueKey -> the columns of a unique index in the catalog that cover it
	tableKeys   sync.Map // uniqueKey without columns -> [][]string: a table's unique keys in the catalog
	upsertable  sync.Map // uniqueKey without columns -> bool: the table can take the upsert (dialect.UpsertTable)
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

// WithConflictRetries sets how many times a single-row call's INSERT is
// tried again after it hit a unique conflict whose row then could not be
// found (deleted in between, or a conflict on a key the lookup does not
// cover). The default is 2; after the last attempt the call returns
// [ErrConflictNotFound]. Negative values mean 0. It retries no transaction:
// for that, see [RetryTransaction] and its [RetryAttempts].
func WithConflictRetries(n int) Option {
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
	// Galera certification (up to 10 times); and Assign's UPDATEs sent again
	// to a row created anew under another id.
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
