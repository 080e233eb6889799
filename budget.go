package safefind

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"gorm.io/gorm"
)

// The savepoint budget. On PostgreSQL a transaction that keeps more than 64
// subtransactions (a savepoint that wrote, released or not; a rolled back one
// does not count) overflows its backend's subtransaction cache, and while
// any older snapshot is alive every reader of the database must then look
// subtransactions up in pg_subtrans: the whole server slows down. So the
// plugin follows, per transaction, the savepoints that pass through the
// *gorm.DB (its own, GORM's nested transactions, anyone's Exec), and:
//
//   - FindOrCreate never takes a transaction past the budget (but for a row
//     with associations, whose atomicity needs a savepoint): once the
//     transaction has reached it, its INSERT skips conflicts (ON CONFLICT DO
//     NOTHING) instead of running in a savepoint;
//   - any statement that takes a transaction past the budget is reported,
//     once per transaction, through the GORM logger with the caller's
//     file:line and to the observer, or refused before it runs
//     (WithSavepointBudgetError).

// ErrSavepointBudget: with [WithSavepointBudgetError], a SAVEPOINT that would
// take its transaction past the savepoint budget was refused before it ran.
var ErrSavepointBudget = errors.New("safefind: the SAVEPOINT would take the transaction past its savepoint budget")

// WithSavepointBudget sets how many savepoints one transaction may keep
// (opened and not rolled back, released or not). The default is the
// database's subtransaction cache: 64 on PostgreSQL, so that no transaction
// overflows it through safefind; no budget on MySQL/MariaDB and SQLite,
// whose savepoints have no such cost. n below 1 turns the budget off.
func WithSavepointBudget(n int) Option {
	return func(c *config) { c.budget = max(n, 0) }
}

// WithSavepointBudgetError makes a SAVEPOINT statement, safefind's or anyone's,
// that would take its transaction past the budget fail with
// [ErrSavepointBudget] before it runs, instead of a warning in the log.
func WithSavepointBudgetError() Option {
	return func(c *config) { c.budgetError = true }
}

// budgetOf returns the savepoint budget for db's dialect; 0 for none.
func (p *Plugin) budgetOf(db *gorm.DB) int {
	if p.cfg.budget >= 0 {
		return p.cfg.budget
	}
	if d := dialectOf(db); d != nil {
		return d.SubtransactionCache()
	}
	return 0
}

// overBudget reports whether the call's transaction has reached the
// savepoint budget, so that its INSERT must do without a savepoint.
func (c *call) overBudget() bool {
	budget := c.p.budgetOf(c.tx)
	if budget == 0 {
		return false
	}
	st := c.p.txs.get(txOf(c.tx.Statement), false)
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.kept >= budget
}

// checkBudget runs before every statement: a SAVEPOINT on a transaction
// that has reached the budget is reported, or refused.
func (p *Plugin) checkBudget(db *gorm.DB) {
	if db.Error != nil || db.DryRun || !isSavepoint(db.Statement.SQL.String()) {
		return
	}
	budget := p.budgetOf(db)
	st := p.txs.get(txOf(db.Statement), budget > 0)
	if st == nil {
		return
	}
	st.mu.Lock()
	kept := st.kept
	first := !st.warned && kept >= budget
	if first {
		st.warned = true
	}
	st.mu.Unlock()
	if kept < budget {
		return
	}
	where := callerLine()
	var err error
	if p.cfg.budgetError {
		// GORM's dialectors discard the error of a nested transaction's
		// SAVEPOINT and run the nested function anyway: its first statement,
		// and every later one, must fail too, or a rollback of the nested
		// transaction would have nothing to roll back to.
		err = fmt.Errorf("%w (budget %d, at %s); roll back the transaction", ErrSavepointBudget, budget, where)
		db.AddError(err)
		p.txs.setRefuse(st, err)
	}
	if !first {
		return
	}
	p.stats.overBudget.Add(1)
	if err == nil {
		db.Logger.Warn(db.Statement.Context,
			"safefind: a SAVEPOINT takes this transaction past its budget of %d kept savepoints (on PostgreSQL, past 64 every reader of the database slows down), at %s",
			budget, where)
	}
	p.emit(db, Event{Kind: EventBudgetExceeded, Err: err})
}

// trackSavepoints runs after every successful statement on a transaction:
// it follows the savepoints opened, released and rolled back.
func (p *Plugin) trackSavepoints(db *gorm.DB, sql string, savepoint bool) {
	tx := txOf(db.Statement)
	if tx == nil {
		return
	}
	control := savepoint || isControl(sql)
	if !control && p.txs.unkept.Load() == 0 {
		return // no savepoint anywhere waits for a write to count again
	}
	// State is kept only where there is a budget to keep.
	st := p.txs.get(tx, savepoint && p.budgetOf(db) > 0)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	p.txs.unkept.Add(int64(st.track(sql, control)))
}

// track follows one statement: a savepoint statement (control), or any
// other, whose write gives the innermost savepoint a subtransaction id, and
// its parents too, so that savepoints re-established by ROLLBACK TO are kept
// again.
// It returns the change in the number of open savepoints not kept.
func (st *txState) track(sql string, control bool) (unkeptDelta int) {
	before := st.unkept
	if !control {
		if st.unkept == 0 || isRead(sql) {
			return 0
		}
		for i := range st.open {
			if !st.open[i].kept {
				st.open[i].kept = true
				st.kept++
			}
		}
		st.unkept = 0
		return -before
	}
	for _, s := range strings.Split(sql, ";") {
		st.apply(strings.Fields(s))
	}
	st.unkept = 0
	for _, sp := range st.open {
		if !sp.kept {
			st.unkept++
		}
	}
	return st.unkept - before
}

// apply follows one statement's effect on the open savepoints.
func (st *txState) apply(words []string) {
	if len(words) < 2 {
		return
	}
	name := words[len(words)-1]
	find := func() int {
		for i := len(st.open) - 1; i >= 0; i-- {
			if st.open[i].name == name {
				return i
			}
		}
		return -1
	}
	switch strings.ToUpper(words[0]) {
	case "SAVEPOINT":
		st.open = append(st.open, savepoint{name: name, kept: true})
		st.kept++
	case "RELEASE": // RELEASE [SAVEPOINT] name: the released keep their subtransactions
		if i := find(); i >= 0 {
			st.open = st.open[:i]
		}
	case "ROLLBACK": // ROLLBACK TO [SAVEPOINT] name: the later ones are gone, name is re-established
		if len(words) < 3 || !strings.EqualFold(words[1], "TO") {
			return
		}
		if i := find(); i >= 0 {
			for _, sp := range st.open[i:] {
				if sp.kept {
					st.kept--
				}
			}
			st.open = append(st.open[:i], savepoint{name: name})
		}
	}
}

// savepoint is one open savepoint of a transaction.
type savepoint struct {
	name string
	kept bool // it may hold a subtransaction id: it was opened, or written in since ROLLBACK TO
}

// ownDir is the directory of safefind's own files, skipped with GORM's when
// looking for the caller.
var ownDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// callerLine returns file:line of the first caller outside GORM and
// safefind.
func callerLine() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		dir := filepath.Dir(f.File)
		if f.File != "" && !strings.Contains(f.File, "gorm.io/") && dir != ownDir && dir != filepath.Join(ownDir, "dialect") &&
			!strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "reflect.") {
			return fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}
