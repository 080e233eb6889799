package safefind

import (
	"fmt"
	"reflect"
	"time"

	"github.com/safefind/safefind/dialect"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// A lookup is the caller's chain (Where, Table, Model, Scopes, Clauses,
// Session, WithContext, an open transaction) plus the inline conditions,
// exactly as FirstOrCreate takes them. safefind reads the final WHERE clause
// from the statement GORM builds, after scopes have run (inspectLookup, or
// the probe before an INSERT that comes first), and from it takes the
// equalities that the row to create must satisfy (conditions.go).

// errNotInspected: the lookup ran without passing inspectLookup, which happens
// only when a scope replaces the statement with a new one (NewDB).
var errNotInspected = fmt.Errorf("%w: a scope replaced the lookup's statement", ErrUnsupportedCondition)

// call is one FindOrCreate, CreateOrFind, FindOrCreateAll or
// CreateOrFindAll: what it was given, its lookup, and what the inspection
// of the lookup found. A call is not shared between goroutines.
type call struct {
	op    string // opFindOrCreate, ...
	start time.Time
	p     *Plugin
	d     dialect.Dialect
	tx    *gorm.DB // the caller's chain
	conds []any    // the inline conditions
	base  *gorm.DB // the lookup: tx and inline conditions; reusable (find adds LIMIT 1, ORDER BY pk); see lookup
	// first is the lookup as begin built it, unread: the call's first read
	// runs on it, not on a clone of base (one statement built the fewer on
	// a hit); nil once read.
	first  *gorm.DB
	dest   reflect.Value // *Model
	inTx   bool
	strict bool // every condition must be an assignable equality (CreateOrFind)
	batch  bool // the keys come from the rows: the chain may have no condition

	// Read off the lookup statement by inspectLookup.
	inspected bool
	schema    *schema.Schema
	table     string
	tableExpr *clause.Expr
	locked    bool // the caller asked for a locking read
	// insertTable is the table to insert into when the lookup's table
	// expression has an alias (Table("tags AS t")): the name before it.
	insertTable string
	// catalogTable is the table's name in the catalog, unquoted, qualified
	// by its schema if the lookup's was ("archive.tags").
	catalogTable string
	eqs          []equality
	whereVars    int // bind parameters of the lookup's conditions (batches)
	// where is the lookup's WHERE; plainLookup says the lookup has nothing
	// else (plainLookup), so that a statement of safefind's own can read
	// with it (insert_select.go).
	where       clause.Where
	plainLookup bool

	own, probe marker // the clauses that mark the call's statements (marker.go)

	// The chain's Attrs and Assign (request.go), and Assign's columns as
	// the update of an existing row takes them.
	attrs, assigns []assignment
	updates        map[string]any

	// upsertInWith: the upsert is a WITH query whose UPDATE is a part of
	// its own (upsertWith), not ON CONFLICT's DO UPDATE (plan.go).
	upsertInWith bool

	writing plan // the plan of the INSERT under way
	// What the INSERT under way did (hooks.go): whether it was sent, and
	// its own error, as opposed to its associations'.
	insertSent bool
	insertErr  error
	// uniqueKey: the columns of a primary key or unique index that the
	// lookup's equalities cover (unique.go); nil with the guard off.
	uniqueKey []string
}

// begin validates the arguments and prepares the lookup. It sends nothing.
// On an error it returns the call too, if the plugin was found, so that the
// failure is reported.
func begin(tx *gorm.DB, dest any, conds []any, op string) (*call, error) {
	c, err := newCall(tx, op)
	if err != nil {
		return c, err
	}
	v := reflect.ValueOf(dest)
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return c, fmt.Errorf("%w, got %T", ErrInvalidDest, dest)
	}
	c.dest = v

	c.conds = conds
	q, err := c.newLookup()
	if err != nil {
		return c, err
	}
	if len(chainValues(tx.Statement, assignsIndex)) > 0 {
		// Assign's UPDATE follows the read of a row found: the lookup is
		// needed again.
		c.base = q.Session(&gorm.Session{})
	} else {
		c.first = q
	}
	return c, nil
}

// newLookup returns a new statement of the lookup, marked as c's: the
// caller's chain and the inline conditions.
func (c *call) newLookup() (*gorm.DB, error) {
	q := c.tx.Session(&gorm.Session{}).Clauses() // a statement of its own
	if len(c.conds) > 0 {
		exprs, err := buildCondition(q.Statement, c.conds)
		if err != nil {
			return q, err
		}
		if len(exprs) == 0 {
			return q, fmt.Errorf("%w: inline conditions %v select nothing (GORM drops zero-valued struct fields; use a map to match zero values)", ErrNoConditions, c.conds)
		}
		q.Statement.AddClause(clause.Where{Exprs: exprs})
	}
	return mark(q, c), nil
}

// lookup returns the lookup, reusable: every statement built on it runs on
// a clone of it. A single-row call builds it when it first needs it:
// a hit needs only first.
func (c *call) lookup() *gorm.DB {
	if c.base == nil {
		q, err := c.newLookup() // as begin built it: no error
		if err != nil {
			q.AddError(err)
		}
		c.base = q.Session(&gorm.Session{})
	}
	return c.base
}

// lookupFor returns q, a lookup on the caller's chain, marked as c's and
// reusable: every read runs on a clone of it.
func lookupFor(q *gorm.DB, c *call) *gorm.DB {
	return mark(q, c).Session(&gorm.Session{})
}

// inTransaction returns a call like c, inspected as c is, whose statements
// run in t, a transaction that c began itself (a batch of a model with
// create hooks). Only batches do: their lookup has no inline condition.
func (c *call) inTransaction(t *gorm.DB) *call {
	in := *c
	in.tx, in.inTx = t, true
	in.base, in.first = lookupFor(t.Session(&gorm.Session{}), &in), nil
	return &in
}

// newCall checks what every call needs: a DB with the plugin, a chain
// without error, a live context and a supported dialect. Once the plugin is
// found it returns the call even with an error, to report the failure.
func newCall(tx *gorm.DB, op string) (*call, error) {
	p, err := pluginOf(tx)
	if err != nil {
		return nil, err
	}
	c := &call{op: op, p: p, tx: tx, table: tx.Statement.Table}
	if p.cfg.observer != nil {
		c.start = time.Now() // for the events' durations
	}
	c.strict = op == opCreateOrFind || op == opCreateOrFindAll || op == opUpsertAll
	if tx.Error != nil {
		return c, tx.Error
	}
	if err := tx.Statement.Context.Err(); err != nil {
		return c, err
	}
	if c.d = dialect.For(tx.Dialector.Name()); c.d == nil {
		return c, fmt.Errorf("%w: %q", ErrUnsupportedDialect, tx.Dialector.Name())
	}
	_, c.inTx = tx.Statement.ConnPool.(gorm.TxCommitter)
	return c, nil
}

// buildCondition builds inline conditions as Find would, turning a panic on
// input GORM cannot handle into an error.
func buildCondition(stmt *gorm.Statement, conds []any) (exprs []clause.Expression, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v: %v", ErrUnsupportedCondition, conds, r)
		}
	}()
	exprs = stmt.BuildCondition(conds[0], conds[1:]...)
	return exprs, stmt.Error
}

// firstByPrimaryKey is the order of a single-row read, as FirstOrCreate's.
var firstByPrimaryKey = clause.OrderByColumn{Column: clause.Column{Table: clause.CurrentTable, Name: clause.PrimaryKey}}

// read runs the lookup, the first read or the latest (see [call.reader]).
// A hit overwrites dest.
func (c *call) read(latest bool) (bool, error) {
	row, found, err := c.find(latest)
	if found {
		c.dest.Elem().Set(row.Elem())
	}
	return found, err
}

// find runs the lookup and returns the row it found, a new value behind a
// pointer: scanned into dest, GORM would add dest's own primary key, if
// set, to the lookup.
func (c *call) find(latest bool) (row reflect.Value, found bool, err error) {
	row = reflect.New(c.dest.Type().Elem())
	r := c.reader(latest).Limit(1).Order(firstByPrimaryKey).Find(row.Interface())
	if r.Error != nil {
		return row, false, r.Error
	}
	if !c.inspected {
		return row, false, errNotInspected
	}
	return row, r.RowsAffected > 0, nil
}

// probeConditions reads the lookup's conditions without sending anything,
// for the calls whose INSERT comes first. The lookup runs as a DryRun
// query, so that the chain's scopes and every Query callback before
// gorm:query (a plugin's own conditions) run as for a read; inspectLookup
// reads the conditions and gives the statement a SQL comment, so that GORM
// builds no SQL for it. It is traced by no logger.
func (c *call) probeConditions() error {
	var dry *gorm.DB
	if q := c.first; q != nil {
		// The probe is the lookup's first run: on the statement begin
		// built, whose configuration is the call's own copy (a Session).
		c.first = nil
		q.Config.DryRun, q.Config.Logger = true, silent{c.tx.Logger}
		dry = markProbe(q, c)
	} else {
		dry = markProbe(c.lookup().Session(&gorm.Session{DryRun: true, Logger: silent{c.tx.Logger}}), c)
	}
	if err := dry.Find(reflect.New(c.dest.Type().Elem()).Interface()).Error; err != nil {
		return err
	}
	if !c.inspected {
		return errNotInspected
	}
	return nil
}
