package safefind

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/big"
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

// callKey carries the call in the settings of safefind's own statements.
// Settings follow a statement into its clones (a scope may clone it) and
// into preload queries; a callback knows the call's own statement by its
// destination, which is the call's alone.
const callKey = "safefind:call"

// errProbed stops a statement in the guard once its conditions are read.
var errProbed = errors.New("safefind: probed")

// errNotInspected: the lookup ran without passing the guard, which happens
// only when a scope replaces the statement with a new one (NewDB).
var errNotInspected = fmt.Errorf("%w: a scope replaced the lookup's statement", ErrUnsupportedCondition)

// call is one FindOrCreate or CreateOrFind.
type call struct {
	op     string // opFindOrCreate, ...
	start  time.Time
	p      *Plugin
	d      dialect.Dialect
	tx     *gorm.DB      // the caller's chain
	base   *gorm.DB      // the lookup: tx, inline conditions, LIMIT 1, ORDER BY pk; reusable
	dest   reflect.Value // *Model
	inTx   bool
	strict bool // every condition must be an assignable equality (CreateOrFind)
	batch  bool // the keys come from the rows: the chain may have no condition
	probe  bool // the next guarded statement only reads its conditions
	target any  // the destination of the statement under way: a fresh value, or dest

	// Read off the lookup statement by the guard.
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
}

// equality is a column = value condition, to be set on the row to create.
type equality struct {
	field *schema.Field
	value any
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

	q := tx.Session(&gorm.Session{}).Limit(1).Order(clause.OrderByColumn{
		Column: clause.Column{Table: clause.CurrentTable, Name: clause.PrimaryKey},
	})
	if len(conds) > 0 {
		exprs, err := buildCondition(q.Statement, conds)
		if err != nil {
			return c, err
		}
		if len(exprs) == 0 {
			return c, fmt.Errorf("%w: inline conditions %v select nothing (GORM drops zero-valued struct fields; use a map to match zero values)", ErrNoConditions, conds)
		}
		q.Statement.AddClause(clause.Where{Exprs: exprs})
	}
	c.base = q.Set(callKey, c).Session(&gorm.Session{})
	return c, nil
}

// newCall checks what every call needs: a DB with the plugin, a chain
// without error, a live context and a supported dialect. Once the plugin is
// found it returns the call even with an error, to report the failure.
func newCall(tx *gorm.DB, op string) (*call, error) {
	p, err := pluginOf(tx)
	if err != nil {
		return nil, err
	}
	c := &call{op: op, start: time.Now(), p: p, tx: tx, table: tx.Statement.Table}
	c.strict = op == opCreateOrFind || op == opCreateOrFindAll
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

// read runs the lookup. Without latest it is the call's first read, which a
// replica may serve. With latest it reads on the primary and, inside a
// transaction, adds the dialect's locking read unless the caller chose a
// lock, so that a row committed after the transaction's snapshot is seen. A
// hit overwrites dest.
func (c *call) read(latest bool) (bool, error) {
	q := c.lookup(latest)
	if latest && c.inTx && !c.locked {
		if l := c.d.LatestRead(); l != nil {
			q = q.Clauses(l)
		}
	}
	fresh := reflect.New(c.dest.Type().Elem())
	c.target = fresh.Interface()
	r := q.Find(c.target)
	if r.Error != nil {
		return false, r.Error
	}
	if !c.inspected {
		return false, errNotInspected
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
	c.target = reflect.New(c.dest.Type().Elem()).Interface()
	err := c.base.Find(c.target).Error
	c.probe = false
	switch {
	case errors.Is(err, errProbed):
		return nil
	case err == nil:
		return errNotInspected
	}
	return err
}

// guard is the Query callback that inspects safefind's lookups before they
// are sent.
func (p *Plugin) guard(db *gorm.DB) {
	c := callOf(db)
	if c == nil || db.Error != nil {
		return
	}
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

// callOf returns the call a statement belongs to, or nil.
func callOf(db *gorm.DB) *call {
	v, ok := db.Get(callKey)
	if !ok {
		return nil
	}
	c, ok := v.(*call)
	if !ok || db.Statement.Dest != c.target {
		return nil
	}
	return c
}

// inspect validates the lookup statement and collects its equalities.
func (c *call) inspect(stmt *gorm.Statement) error {
	if stmt.Schema == nil {
		return fmt.Errorf("%w: no model schema", ErrInvalidDest)
	}
	if stmt.Schema.ModelType != c.dest.Type().Elem() {
		return fmt.Errorf("%w: dest is %s but the model is %s", ErrInvalidDest, c.dest.Type(), stmt.Schema.ModelType)
	}
	c.schema, c.table, c.tableExpr = stmt.Schema, stmt.Table, stmt.TableExpr
	c.catalogTable = c.table
	if te := stmt.TableExpr; te != nil {
		if len(te.Vars) > 0 {
			return fmt.Errorf("%w: cannot insert into the table expression %q", ErrUnsupportedCondition, te.SQL)
		}
		f := strings.Fields(te.SQL)
		if len(f) > 1 {
			c.insertTable = f[0]
		}
		if len(f) > 0 {
			// GORM keeps only the name after the schema in Statement.Table.
			c.catalogTable = strings.NewReplacer(`"`, "", "`", "").Replace(f[0])
		}
	}
	_, c.locked = stmt.Clauses["FOR"]
	c.eqs = c.eqs[:0]
	where, _ := stmt.Clauses["WHERE"].Expression.(clause.Where)
	leaves, err := c.collect(stmt, where.Exprs)
	if err != nil {
		return err
	}
	if leaves == 0 && !c.batch {
		return ErrNoConditions
	}
	if c.batch && leaves > 0 {
		c.whereVars = len(build(stmt, where).Vars)
	}
	if err := c.validate(stmt.Context); err != nil {
		return err
	}
	if c.batch || !c.p.cfg.uniqueGuard {
		return nil // a batch checks its keys and the chain's equalities together
	}
	return c.p.checkUnique(c, nil)
}

// collect appends the equalities among exprs to c.eqs and counts the
// conditions. Other conditions only filter the reads; CreateOrFind refuses
// them.
func (c *call) collect(stmt *gorm.Statement, exprs []clause.Expression) (leaves int, err error) {
	for _, e := range exprs {
		var pairs []pair
		switch e := e.(type) {
		case nil:
			return 0, fmt.Errorf("%w: a nil condition", ErrUnsupportedCondition)
		case keysIn: // a batch's own key list
			continue
		case clause.AndConditions:
			n, err := c.collect(stmt, e.Exprs)
			if err != nil {
				return 0, err
			}
			leaves += n
			continue
		case clause.Eq:
			if col, ok := columnOf(e.Column); ok && assignable(e.Value) {
				pairs = []pair{{col, e.Value}}
			}
		case clause.IN: // GORM's form of an inline primary key, and of a one-element list
			if col, ok := columnOf(e.Column); ok && len(e.Values) == 1 && assignable(e.Values[0]) {
				pairs = []pair{{col, e.Values[0]}}
			}
		case clause.Expr:
			pairs = parseEqualities(e.SQL, e.Vars)
		}
		leaves++
		if pairs == nil {
			if c.strict {
				return 0, fmt.Errorf("%w: %s", ErrUnsupportedCondition, render(stmt, e))
			}
			continue
		}
		for _, pr := range pairs {
			// Under an alias (Table("tags AS t")) only the alias names the table.
			if pr.col.Table != "" && pr.col.Table != clause.CurrentTable && pr.col.Table != c.table &&
				(pr.col.Table != c.schema.Table || c.insertTable != "") {
				if c.strict {
					return 0, fmt.Errorf("%w: %s is on another table", ErrUnsupportedCondition, render(stmt, e))
				}
				continue
			}
			f := c.schema.LookUpField(pr.col.Name)
			if pr.col.Name == clause.PrimaryKey {
				f = c.schema.PrioritizedPrimaryField
			}
			if f == nil {
				return 0, fmt.Errorf("%w: %q in %s", ErrUnknownColumn, pr.col.Name, render(stmt, e))
			}
			if pr.col.Name != clause.PrimaryKey && !strings.EqualFold(pr.col.Name, f.DBName) {
				// GORM finds the field by its Go name too, but the SQL names
				// the column as written.
				return 0, fmt.Errorf("%w: %q is the field %s; its column is %q, in %s", ErrUnknownColumn, pr.col.Name, f.Name, f.DBName, render(stmt, e))
			}
			if !f.Creatable {
				return 0, fmt.Errorf("%w: %q is not written on create, in %s", ErrUnknownColumn, pr.col.Name, render(stmt, e))
			}
			c.eqs = append(c.eqs, equality{f, pr.value})
		}
	}
	return leaves, nil
}

// validate sets the equalities on a scratch value, before anything is sent.
// It refuses what would create a row the lookup cannot find: a value the
// field cannot take, or takes as another value (1.5 into a string, -1 into
// an unsigned integer, bytes into a string); a zero value for a field whose
// zero GORM replaces on create (an auto-increment key, a default, an
// auto-create time); two different values for one field.
func (c *call) validate(ctx context.Context) error {
	if len(c.eqs) == 0 {
		return nil
	}
	scratch := reflect.New(c.dest.Type().Elem()).Elem()
	for i, e := range c.eqs {
		var before any
		again := false
		for _, prev := range c.eqs[:i] {
			if prev.field == e.field {
				again = true
				before = e.field.ReflectValueOf(ctx, scratch).Interface()
				break
			}
		}
		if err := e.field.Set(ctx, scratch, e.value); err != nil {
			return fmt.Errorf("%w: %s cannot take %#v: %w", ErrUnsupportedCondition, e.field.Name, e.value, err)
		}
		rv := e.field.ReflectValueOf(ctx, scratch)
		stored := rv.Interface()
		if again && !reflect.DeepEqual(before, stored) {
			return fmt.Errorf("%w: %s is given two different values", ErrUnsupportedCondition, e.field.Name)
		}
		if _, ok := stored.(driver.Valuer); !ok && rv.CanAddr() {
			if v, ok := rv.Addr().Interface().(driver.Valuer); ok {
				stored = v // a Valuer with a pointer receiver
			}
		}
		if !storedAsGiven(stored, e.value) {
			return fmt.Errorf("%w: %s would be stored as %#v, not %#v: no lookup would find it", ErrUnsupportedCondition, e.field.Name, stored, e.value)
		}
		if _, zero := e.field.ValueOf(ctx, scratch); zero &&
			(e.field.HasDefaultValue || e.field.AutoCreateTime > 0 || e.field.AutoUpdateTime > 0) {
			return fmt.Errorf("%w: %s = %#v: on create GORM stores the field's default instead of its zero value", ErrUnsupportedCondition, e.field.Name, e.value)
		}
	}
	return nil
}

// storedAsGiven reports whether the value a field stores, after GORM set it
// from a condition's value, is the value the condition compares with, as the
// database compares them: equal values of any Go types (5 and "5" and 5.0,
// "1.50" and 1.5), a time and a string the database parses. It is false for
// what changes on the way in: a fraction into an integer or a string
// ("2" for 1.5), a negative number into an unsigned one, a string parsed in
// another base ("0x10", "010"), bytes into a string and back.
func storedAsGiven(stored, given any) bool {
	s, err := keyValue(stored)
	if err != nil {
		return false
	}
	g, err := keyValue(given)
	if err != nil {
		return false
	}
	if keyID([]any{s}) == keyID([]any{g}) {
		return true
	}
	if sn, ok := decimal(s); ok {
		if gn, ok := decimal(g); ok {
			return sn.Cmp(gn) == 0
		}
	}
	if _, ok := s.(time.Time); ok {
		_, ok := g.(string)
		return ok // the database parses the string as it stores the time
	}
	return false
}

// decimal returns v as an exact number: an integer, a float, or a string
// of decimal digits with an optional sign and fraction.
func decimal(v any) (*big.Rat, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return new(big.Rat).SetInt64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return new(big.Rat).SetUint64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		r := new(big.Rat)
		if r.SetFloat64(rv.Float()) == nil {
			return nil, false
		}
		return r, true
	case reflect.String:
		s := strings.TrimPrefix(strings.TrimPrefix(rv.String(), "-"), "+")
		whole, frac, _ := strings.Cut(s, ".")
		if whole == "" || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
			return nil, false
		}
		return new(big.Rat).SetString(rv.String())
	}
	return nil, false
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

// assignable reports whether v is one value that an equality compares with
// "=" and that can be stored: not NULL (GORM renders it IS NULL, and a unique
// index does not hold NULLs), not a list (rendered as IN), not an expression
// or a query. It follows GORM's Statement.AddVar: a driver.Valuer and a byte
// slice or array are single values.
func assignable(v any) bool {
	if isNull(v) {
		return false
	}
	switch v.(type) {
	case clause.Expression, *gorm.DB:
		return false
	case driver.Valuer, []byte:
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Slice, reflect.Array:
		return rv.Type().Elem().Kind() == reflect.Uint8
	}
	return true
}

// isNull reports whether GORM renders v as NULL, as its clause.Eq does.
func isNull(v any) bool {
	if v == nil {
		return true
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return true
	}
	if valuer, ok := v.(driver.Valuer); ok {
		value, err := valuer.Value()
		return err == nil && isNull(value)
	}
	return false
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
	return build(stmt, e).SQL.String()
}

// build renders e on a scratch statement like stmt.
func build(stmt *gorm.Statement, e clause.Expression) *gorm.Statement {
	s := &gorm.Statement{DB: stmt.DB, Table: stmt.Table, Schema: stmt.Schema, Clauses: map[string]clause.Clause{}}
	e.Build(s)
	return s
}

// assign sets the lookup's equalities on dest: the row to create must be
// found by the lookup.
func (c *call) assign(ctx context.Context) error {
	return c.assignTo(ctx, c.dest.Elem())
}

// assignTo sets the lookup's equalities on the struct v.
func (c *call) assignTo(ctx context.Context, v reflect.Value) error {
	for _, e := range c.eqs {
		if err := e.field.Set(ctx, v, e.value); err != nil {
			return fmt.Errorf("safefind: set %s from the lookup: %w", e.field.Name, err)
		}
	}
	return nil
}

// insert inserts dest, skipping a conflicting row where the dialect can
// (skip), and reports whether the row was created. A unique violation is not
// an error: it is reported as a conflict, with the database's error in dup.
//
// The INSERT runs on the caller's connection and context, with the caller's
// settings (db.Set), Select and Omit, but none of its clauses: the lookup's
// WHERE, ORDER and locking mean nothing to an INSERT.
func (c *call) insert(skip bool) (created bool, dup error, err error) {
	db := c.insertDB(&gorm.Session{
		// One INSERT is atomic by itself; GORM's default transaction only
		// serves hooks, and associations are not saved.
		SkipDefaultTransaction: c.tx.SkipDefaultTransaction || !hasCreateHooks(c.schema),
		Logger:                 quietConflicts{c.tx.Logger, c.tx.Dialector},
	})
	if skip {
		db = db.Clauses(c.d.SkipOnConflict()...)
	}
	c.target = c.dest.Interface()
	r := db.Set(callKey, c).Create(c.target)
	switch {
	case r.Error == nil:
		return r.RowsAffected > 0, nil, nil
	case isDuplicate(c.tx.Dialector, r.Error):
		return false, r.Error, nil
	}
	return false, nil, r.Error
}

// insertDB returns a new statement on the caller's connection and context
// for an INSERT into the lookup's table, with the caller's settings, Select
// and Omit, and the session options s (whose NewDB is set).
func (c *call) insertDB(s *gorm.Session) *gorm.DB {
	s.NewDB = true
	db := c.tx.Session(s).Clauses()
	st := db.Statement
	c.tx.Statement.Settings.Range(func(k, v any) bool {
		st.Settings.Store(k, v)
		return true
	})
	st.Selects = c.tx.Statement.Selects
	st.Omits = append(append([]string(nil), c.tx.Statement.Omits...), clause.Associations)
	keepResolver(c.tx, db)
	if c.insertTable != "" {
		return db.Table(c.insertTable)
	}
	st.Table, st.TableExpr = c.table, c.tableExpr
	return db
}

func hasCreateHooks(s *schema.Schema) bool {
	return s.BeforeCreate || s.BeforeSave || s.AfterCreate || s.AfterSave
}

// skipped is the Create callback that keeps GORM from running AfterCreate and
// AfterSave hooks for a row that safefind's INSERT skipped on a conflict.
func skipped(db *gorm.DB) {
	if c := callOf(db); c != nil && db.Error == nil && db.RowsAffected == 0 {
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

// createOrRead is the end of both paths: insert (inside a savepoint where
// needed), and on a conflict read the winner's row. A conflict whose row
// cannot be read is tried again, WithRetries times.
//
// On an error dest is left as the caller prepared it.
func (c *call) createOrRead(skip bool) (created bool, err error) {
	prepared := reflect.New(c.dest.Type().Elem()).Elem()
	prepared.Set(c.dest.Elem())
	defer func() {
		if err != nil {
			c.dest.Elem().Set(prepared)
		}
	}()
	ctx := c.tx.Statement.Context
	if err := c.assign(ctx); err != nil {
		return false, err
	}
	if !skip && c.needSavepoint() && c.overBudget() {
		// A savepoint would take the transaction past its budget: skip
		// conflicts instead. The transaction now depends on this INSERT
		// succeeding or conflicting, as with CreateOrFind.
		skip = true
		c.record(EventBudgetSwitch, 1)
	}
	busy := 0 // statement retries outside a transaction
	for attempt := 0; ; attempt++ {
		var dup error
		if !skip && c.needSavepoint() {
			created, dup, err = c.inSavepoint(func() (bool, error, error) { return c.insert(false) })
		} else {
			created, dup, err = c.insert(skip)
		}
		if dup != nil || err == nil && !created {
			c.record(EventConflict, 1)
		}
		if err != nil && !c.inTx && busy < maxStatementRetries && c.d.RetryStatement(err) && ctx.Err() == nil {
			// Outside a transaction a lost deadlock or a Galera
			// certification failure costs only this statement: try it
			// again.
			busy++
			attempt--
			c.record(EventRetry, 1)
			continue
		}
		if err != nil {
			return false, err
		}
		if created {
			c.record(EventCreated, 1)
			return true, nil
		}
		if c.tx.DryRun {
			_, err := c.read(true)
			return false, err
		}
		found, err := c.read(true)
		if err != nil {
			return false, err
		}
		if found {
			c.record(EventFound, 1)
			return false, nil
		}
		if err := c.staleSnapshot(); err != nil {
			return false, err
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
		c.record(EventRetry, 1)
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}

// staleSnapshot returns ErrStaleSnapshot when the caller's transaction reads
// from a snapshot that can hide a row committed after it began: the reason,
// on PostgreSQL, that a conflict's row cannot be read.
func (c *call) staleSnapshot() error {
	if !c.inTx {
		return nil
	}
	hidden, err := c.d.SnapshotHidesCommitted(c.tx.Session(&gorm.Session{NewDB: true}))
	if err != nil {
		return err
	}
	if hidden {
		return fmt.Errorf("%w (table %s)", ErrStaleSnapshot, c.table)
	}
	return nil
}
