package safefind

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// Observability. Stats are the zero-setup view: cumulative counters. An
// observer (WithObserver) receives every outcome as it happens, with its
// table, duration and error, to feed metrics or traces without safefind
// importing any of them.

// EventKind says what an [Event] reports.
type EventKind int

// The kinds of [Event]. A single-row call ends with exactly one of
// EventFound, EventCreated and EventFailed; a batch reports EventFound and
// EventCreated with the number of rows, then EventFailed if it failed.
const (
	// EventFound: the call returned an existing row (Rows rows for a batch),
	// on the first read or after losing a race.
	EventFound EventKind = iota + 1
	// EventCreated: the call's INSERT created the row (Rows rows).
	EventCreated
	// EventConflict: a lost race. The INSERT met a row another caller had
	// created (Rows rows); the winner's row is read next.
	EventConflict
	// EventRetry: an INSERT is tried again, after a conflict whose row could
	// not be found, or, outside a transaction, after it lost a deadlock or a
	// Galera certification; or Assign's UPDATE is sent again, to a row
	// deleted and created anew under another id.
	EventRetry
	// EventFailed: the call returned Err.
	EventFailed
	// EventSavepoint: safefind opened a savepoint around its INSERT.
	// Duration is the SAVEPOINT statement's; Err is set if it failed.
	EventSavepoint
	// EventSavepointReleased: the savepoint was released after the INSERT
	// created the row.
	EventSavepointReleased
	// EventSavepointRolledBack: the savepoint was rolled back (and released)
	// after the INSERT met a conflict or failed.
	EventSavepointRolledBack
	// EventBudgetSwitch: FindOrCreate's transaction had reached the savepoint
	// budget, so its INSERT skips conflicts instead of running in a savepoint.
	EventBudgetSwitch
	// EventBudgetExceeded: a SAVEPOINT, safefind's or anyone's, took its
	// transaction past the savepoint budget (reported once per transaction),
	// or was refused (Err, with WithSavepointBudgetError). Op is empty.
	EventBudgetExceeded
)

var eventNames = [...]string{
	EventFound:               "found",
	EventCreated:             "created",
	EventConflict:            "conflict",
	EventRetry:               "retry",
	EventFailed:              "failed",
	EventSavepoint:           "savepoint",
	EventSavepointReleased:   "savepoint released",
	EventSavepointRolledBack: "savepoint rolled back",
	EventBudgetSwitch:        "budget switch",
	EventBudgetExceeded:      "budget exceeded",
}

// String returns the kind's name in lower case, as in "found" or
// "savepoint rolled back".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one outcome, as an observer receives it.
type Event struct {
	Kind EventKind
	// Op is the call: "FindOrCreate", "CreateOrFind", "FindOrCreateAll" or
	// "CreateOrFindAll".
	Op string
	// Table is the lookup's table; empty when the call failed before its
	// table was known.
	Table string
	// Rows is how many rows the event is about: 1 for a single-row call, the
	// rows found, created or lost for a batch, 0 for savepoint events and
	// EventFailed.
	Rows int
	// Duration is the time since the call began; for savepoint events, the
	// time the savepoint statement took.
	Duration time.Duration
	// Err is the error the call returned (EventFailed) or the savepoint
	// statement's error.
	Err error
}

// Observer receives events. ctx is the context of the call's *gorm.DB, so
// that an observer can attach the event to the caller's trace span. It is
// called synchronously, on the caller's goroutine, possibly from many
// goroutines at once, and must not block.
type Observer func(ctx context.Context, e Event)

// WithObserver sets a function that receives every [Event]. Calls in DryRun
// mode send nothing and report nothing.
func WithObserver(o Observer) Option {
	return func(c *config) { c.observer = o }
}

// The calls.
const (
	opFindOrCreate    = "FindOrCreate"
	opCreateOrFind    = "CreateOrFind"
	opFindOrCreateAll = "FindOrCreateAll"
	opCreateOrFindAll = "CreateOrFindAll"
	opUpsertAll       = "UpsertAll"
)

// record counts rows under kind in the plugin's Stats and reports the event.
func (c *call) record(kind EventKind, rows int) {
	if c.tx.DryRun || rows == 0 {
		return
	}
	n := int64(rows)
	switch kind {
	case EventFound:
		c.p.stats.found.Add(n)
	case EventCreated:
		c.p.stats.created.Add(n)
	case EventConflict:
		c.p.stats.conflicts.Add(n)
	case EventRetry:
		c.p.stats.retries.Add(n)
	case EventBudgetSwitch:
		c.p.stats.budgetSwitches.Add(n)
	}
	if c.p.cfg.observer != nil {
		c.emit(Event{Kind: kind, Rows: rows, Duration: time.Since(c.start)})
	}
}

// finish reports a failed call. It is deferred by every call, and safe on
// a nil call (the plugin was not found).
func (c *call) finish(err error) {
	if c == nil || err == nil || c.tx.DryRun {
		return
	}
	if c.p.cfg.observer != nil {
		c.emit(Event{Kind: EventFailed, Duration: time.Since(c.start), Err: err})
	}
}

// savepointEvent reports a savepoint statement that began at start.
func (c *call) savepointEvent(kind EventKind, start time.Time, err error) {
	if !c.tx.DryRun {
		c.emit(Event{Kind: kind, Duration: time.Since(start), Err: err})
	}
}

func (c *call) emit(e Event) {
	if c.p.cfg.observer != nil {
		e.Op, e.Table = c.op, c.table
		c.p.cfg.observer(c.tx.Statement.Context, e)
	}
}

// emit reports an event of a statement that belongs to no call.
func (p *Plugin) emit(db *gorm.DB, e Event) {
	if p.cfg.observer != nil {
		p.cfg.observer(db.Statement.Context, e)
	}
}
