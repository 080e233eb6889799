package safefind

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/safefind/safefind/dialect"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// A lookup is the caller's chain (Where, Table, Model, Scopes, Clauses,
// Session, WithContext, an open transaction) plus the inline conditions,
// exactly as FirstOrCreate takes them. safefind reads the final WHERE clause
// from the statement GORM builds, after scopes have run, in a Query callback
// (guard), and from it takes the equalities that the row to create must
// satisfy.

// callKey marks safefind's own statements (with InstanceSet, so that it does
// not leak into preload queries) and carries the call they belong to.
const callKey = "safefind:call"

// errProbed stops a statement in the guard once its conditions are read.
var errProbed = errors.New("safefind: probed")

// call is one FindOrCreate or CreateOrFind.
type call struct {
	p      *Plugin
	d      dialect.Dialect
	tx     *gorm.DB      // the caller's chain
	base   *gorm.DB      // the lookup: tx, inline conditions, LIMIT 1, ORDER BY pk; reusable
	dest   reflect.Value // *Model
	inTx   bool
	strict bool // every condition must be an assignable equality (CreateOrFind)
	probe  bool // the next guarded statement only reads its conditions

	// Read off the lookup statement by the guard.
	inspected bool
	schema    *schema.Schema
	table     string
	tableExpr *clause.Expr
	locked    bool // the caller asked for a locking read
	eqs       []equality
}

// equality is a column = value condition, to be set on the row to create.
type equality struct {
	field *schema.Field
	value any
}

// begin validates the arguments and prepares the lookup. It sends nothing.
func begin(tx *gorm.DB, dest any, conds []any, strict bool) (c *call, err error) {
	p, err := pluginOf(tx)
	if err != nil {
		return nil, err
	}
	if tx.Error != nil {
		return nil, tx.Error
	}
	if err := tx.Statement.Context.Err(); err != nil {
		return nil, err
	}
	v := reflect.ValueOf(dest)
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w, got %T", ErrInvalidDest, dest)
	}
	d := dialect.For(tx.Dialector.Name())
	if d == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedDialect, tx.Dialector.Name())
	}

	q := tx.Session(&gorm.Session{}).Limit(1).Order(clause.OrderByColumn{
		Column: clause.Column{Table: clause.CurrentTable, Name: clause.PrimaryKey},
	})
	if len(conds) > 0 {
		exprs, err := buildCondition(q.Statement, conds)
		if err != nil {
			return nil, err
		}
		if len(exprs) == 0 {
			return nil, fmt.Errorf("%w: inline conditions %v select nothing (GORM drops zero-valued struct fields; use a map to match zero values)", ErrNoConditions, conds)
		}
		q.Statement.AddClause(clause.Where{Exprs: exprs})
	}
	_, inTx := tx.Statement.ConnPool.(gorm.TxCommitter)
	return &call{p: p, d: d, tx: tx, base: q.Session(&gorm.Session{}), dest: v, inTx: inTx, strict: strict}, nil
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

// read runs the lookup. With latest, inside a transaction, it adds the
// dialect's locking read unless the caller chose a lock, so that a row
// committed after the transaction's snapshot is seen. A hit overwrites dest.
func (c *call) read(latest bool) (bool, error) {
	q := c.base
	if latest && c.inTx && !c.locked {
		if l := c.d.LatestRead(); l != nil {
			q = q.Clauses(l)
		}
	}
	fresh := reflect.New(c.dest.Type().Elem())
	r := q.InstanceSet(callKey, c).Find(fresh.Interface())
	if r.Error != nil {
		return false, r.Error
	}
	if r.RowsAffected == 0 {
		return false, nil
	}
	// Scanned into a fresh value: GORM would otherwise add dest's own primary
	// key, if set, to the lookup.
	c.dest.Elem().Set(fresh.Elem())
	return true, nil
}

// probeConditions reads the lookup's conditions without sending anything.
func (c *call) probeConditions() error {
	c.probe = true
	err := c.base.InstanceSet(callKey, c).Find(reflect.New(c.dest.Type().Elem()).Interface()).Error
	c.probe = false
	if errors.Is(err, errProbed) {
		return nil
	}
	if err == nil {
		err = errors.New("safefind: the lookup was not inspected")
	}
	return err
}

// guard is the Query callback that inspects safefind's lookups before they
// are sent.
func (p *Plugin) guard(db *gorm.DB) {
	v, ok := db.InstanceGet(callKey)
	if !ok || db.Error != nil {
		return
	}
	c := v.(*call)
	if !c.inspected {
		if err := c.inspect(db.Statement); err != nil {
			db.AddError(err)
			return
		}
		c.inspected = true
	}
	if c.probe {
		db.AddError(errProbed)
	}
}

// inspect validates the lookup statement and collects its equalities.
func (c *call) inspect(stmt *gorm.Statement) error {
	if stmt.Schema == nil {
		return fmt.Errorf("%w: no model schema", ErrInvalidDest)
	}
	if stmt.Schema.ModelType != c.dest.Type().Elem() {
		return fmt.Errorf("%w: dest is %s but the model is %s", ErrInvalidDest, c.dest.Type(), stmt.Schema.ModelType)
	}
	where, _ := stmt.Clauses["WHERE"].Expression.(clause.Where)
	if len(where.Exprs) == 0 {
		return ErrNoConditions
	}
	c.schema, c.table, c.tableExpr = stmt.Schema, stmt.Table, stmt.TableExpr
	_, c.locked = stmt.Clauses["FOR"]
	c.eqs = c.eqs[:0]
	return c.collect(stmt, where.Exprs)
}

// collect appends the equalities among exprs to c.eqs. Other conditions only
// filter the reads; CreateOrFind refuses them.
func (c *call) collect(stmt *gorm.Statement, exprs []clause.Expression) error {
	for _, e := range exprs {
		var pairs []pair
		switch e := e.(type) {
		case clause.Eq:
			if col, ok := columnOf(e.Column); ok && assignable(e.Value) {
				pairs = []pair{{col, e.Value}}
			}
		case clause.AndConditions:
			if err := c.collect(stmt, e.Exprs); err != nil {
				return err
			}
			continue
		case clause.Expr:
			pairs = parseEqualities(e.SQL, e.Vars)
		}
		if pairs == nil {
			if c.strict {
				return fmt.Errorf("%w: %s", ErrUnsupportedCondition, render(stmt, e))
			}
			continue
		}
		for _, pr := range pairs {
			if pr.col.Table != "" && pr.col.Table != clause.CurrentTable && pr.col.Table != c.table && pr.col.Table != c.schema.Table {
				if c.strict {
					return fmt.Errorf("%w: %s is on another table", ErrUnsupportedCondition, render(stmt, e))
				}
				continue
			}
			f := c.schema.LookUpField(pr.col.Name)
			if pr.col.Name == clause.PrimaryKey {
				f = c.schema.PrioritizedPrimaryField
			}
			if f == nil {
				return fmt.Errorf("%w: %q in %s", ErrUnknownColumn, pr.col.Name, render(stmt, e))
			}
			c.eqs = append(c.eqs, equality{f, pr.value})
		}
	}
	return nil
}

type pair struct {
	col   clause.Column
	value any
}

func columnOf(col any) (clause.Column, bool) {
	switch col := col.(type) {
	case clause.Column:
		return col, !col.Raw
	case string:
		if t, n, ok := strings.Cut(col, "."); ok {
			return clause.Column{Table: t, Name: n}, true
		}
		return clause.Column{Name: col}, true
	}
	return clause.Column{}, false
}

// assignable reports whether v can be both a lookup value and a value to
// store: not a list (GORM renders those as IN), not an expression or query.
func assignable(v any) bool {
	switch v.(type) {
	case nil, clause.Expression, *gorm.DB:
		return false
	case []byte:
		return true
	}
	k := reflect.ValueOf(v).Kind()
	return k != reflect.Slice && k != reflect.Array
}

// parseEqualities reads SQL of the form `a = ? AND t.b = ?` (identifiers
// optionally quoted or qualified by a table), one value per placeholder. It
// returns nil for anything else.
func parseEqualities(sql string, vars []any) []pair {
	var pairs []pair
	rest := sql
	for i := 0; ; i++ {
		term := rest
		if j := indexAnd(rest); j >= 0 {
			term, rest = rest[:j], rest[j+len(" AND "):]
		} else {
			rest = ""
		}
		lhs, rhs, ok := strings.Cut(term, "=")
		if !ok || strings.TrimSpace(rhs) != "?" || i >= len(vars) || !assignable(vars[i]) {
			return nil
		}
		col, ok := parseColumn(strings.TrimSpace(lhs))
		if !ok {
			return nil
		}
		pairs = append(pairs, pair{col, vars[i]})
		if rest == "" {
			if i+1 != len(vars) {
				return nil
			}
			return pairs
		}
	}
}

// indexAnd finds the first " AND " (any case, any surrounding whitespace).
func indexAnd(s string) int {
	for i := 0; i+5 <= len(s); i++ {
		if isSpace(s[i]) && strings.EqualFold(s[i+1:i+4], "AND") && isSpace(s[i+4]) {
			return i
		}
	}
	return -1
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// parseColumn reads `name`, `"name"`, `table.name` and their quoted forms.
func parseColumn(s string) (clause.Column, bool) {
	var parts []string
	for s != "" {
		var part string
		switch s[0] {
		case '"', '`':
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return clause.Column{}, false
			}
			part, s = s[1:1+end], s[2+end:]
		default:
			end := strings.IndexByte(s, '.')
			if end < 0 {
				end = len(s)
			}
			part, s = s[:end], s[end:]
			if !isIdent(part) {
				return clause.Column{}, false
			}
		}
		if part == "" {
			return clause.Column{}, false
		}
		parts = append(parts, part)
		if s != "" {
			if s[0] != '.' {
				return clause.Column{}, false
			}
			s = s[1:]
			if s == "" {
				return clause.Column{}, false
			}
		}
	}
	switch len(parts) {
	case 1:
		return clause.Column{Name: parts[0]}, true
	case 2:
		return clause.Column{Table: parts[0], Name: parts[1]}, true
	}
	return clause.Column{}, false
}

func isIdent(s string) bool {
	for i, r := range s {
		if r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9' {
			continue
		}
		return false
	}
	return s != ""
}

// render shows a condition in error messages, without its values.
func render(stmt *gorm.Statement, e clause.Expression) string {
	s := &gorm.Statement{DB: stmt.DB, Table: stmt.Table, Schema: stmt.Schema, Clauses: map[string]clause.Clause{}}
	e.Build(s)
	return s.SQL.String()
}

// assign sets the lookup's equalities on dest: the row to create must be
// found by the lookup.
func (c *call) assign(ctx context.Context) error {
	for _, e := range c.eqs {
		if err := e.field.Set(ctx, c.dest.Elem(), e.value); err != nil {
			return fmt.Errorf("safefind: set %s from the lookup: %w", e.field.Name, err)
		}
	}
	return nil
}

// insert inserts dest, skipping a conflicting row where the dialect can
// (skip), and reports whether the row was created. A unique violation is not
// an error: it is reported as a conflict, with the database's error in dup.
func (c *call) insert(skip bool) (created bool, dup error, err error) {
	db := c.tx.Session(&gorm.Session{
		NewDB: true,
		// One INSERT is atomic by itself; GORM's default transaction only
		// serves hooks, and associations are not saved.
		SkipDefaultTransaction: c.tx.SkipDefaultTransaction || !hasCreateHooks(c.schema),
		Logger:                 quietConflicts{c.tx.Logger, c.tx.Dialector},
	}).Omit(clause.Associations)
	db.Statement.Table, db.Statement.TableExpr = c.table, c.tableExpr
	if skip {
		db = db.Clauses(c.d.SkipOnConflict()...)
	}
	r := db.InstanceSet(callKey, c).Create(c.dest.Interface())
	switch {
	case r.Error == nil:
		return r.RowsAffected > 0, nil, nil
	case isDuplicate(c.tx.Dialector, r.Error):
		return false, r.Error, nil
	}
	return false, nil, r.Error
}

func hasCreateHooks(s *schema.Schema) bool {
	return s.BeforeCreate || s.BeforeSave || s.AfterCreate || s.AfterSave
}

// skipped is the Create callback that keeps GORM from running AfterCreate and
// AfterSave hooks for a row that safefind's INSERT skipped on a conflict.
func skipped(db *gorm.DB) {
	if _, ok := db.InstanceGet(callKey); ok && db.Error == nil && db.RowsAffected == 0 {
		db.Statement.SkipHooks = true
	}
}

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

func (q quietConflicts) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if isDuplicate(q.dialector, err) {
		err = nil
	}
	q.Interface.Trace(ctx, begin, fc, err)
}

// createOrRead is the end of both paths: insert (inside a savepoint where
// needed), and on a conflict read the winner's row. A conflict whose row
// cannot be read is tried again, WithRetries times.
func (c *call) createOrRead(skip bool) (bool, error) {
	ctx := c.tx.Statement.Context
	if err := c.assign(ctx); err != nil {
		return false, err
	}
	for attempt := 0; ; attempt++ {
		var created bool
		var dup, err error
		if !skip && c.needSavepoint() {
			created, dup, err = c.inSavepoint(func() (bool, error, error) { return c.insert(false) })
		} else {
			created, dup, err = c.insert(skip)
		}
		if err != nil {
			return false, err
		}
		if created {
			if !c.tx.DryRun {
				c.p.stats.created.Add(1)
			}
			return true, nil
		}
		if c.tx.DryRun {
			_, err := c.read(true)
			return false, err
		}
		c.p.stats.conflicts.Add(1)
		found, err := c.read(true)
		if err != nil {
			return false, err
		}
		if found {
			c.p.stats.found.Add(1)
			return false, nil
		}
		if c.inTx {
			hidden, err := c.d.SnapshotHidesCommitted(c.tx.Session(&gorm.Session{NewDB: true}))
			if err != nil {
				return false, err
			}
			if hidden {
				return false, fmt.Errorf("%w (table %s)", ErrStaleSnapshot, c.table)
			}
		}
		if attempt >= c.p.cfg.retries {
			if dup != nil {
				if !errors.Is(dup, gorm.ErrDuplicatedKey) {
					dup = fmt.Errorf("%w: %w", gorm.ErrDuplicatedKey, dup)
				}
				return false, fmt.Errorf("%w (table %s, %d attempts): %w", ErrConflictNotFound, c.table, attempt+1, dup)
			}
			return false, fmt.Errorf("%w (table %s, %d attempts)", ErrConflictNotFound, c.table, attempt+1)
		}
		c.p.stats.retries.Add(1)
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}
