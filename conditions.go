package safefind

import (
	"context"
	"database/sql/driver"
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// equality is a column = value condition, to be set on the row to create.
type equality struct {
	field *schema.Field
	value any
}

// inspectOnce inspects the call's lookup statement, the first time only:
// the call's later reads are clones of it.
func (c *call) inspectOnce(stmt *gorm.Statement) error {
	if c.inspected {
		return nil
	}
	if err := c.inspect(stmt); err != nil {
		return err
	}
	c.inspected = true
	return nil
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
	c.where, c.plainLookup = where, plainLookup(stmt)
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
	if err := c.readRequest(stmt); err != nil {
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
	var one [1]pair // the pair of a single equality, without an allocation
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
				one[0] = pair{col, e.Value}
				pairs = one[:]
			}
		case clause.IN: // GORM's form of an inline primary key, and of a one-element list
			if col, ok := columnOf(e.Column); ok && len(e.Values) == 1 && assignable(e.Values[0]) {
				one[0] = pair{col, e.Values[0]}
				pairs = one[:]
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
			f := lookUpField(c.schema, pr.col.Name)
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
	var scratch reflect.Value
	for i, e := range c.eqs {
		var before any
		again, twice := false, false
		for j, other := range c.eqs {
			if j != i && other.field == e.field {
				twice = true
				again = again || j < i
			}
		}
		if !twice && sameBasicType(e.value, e.field) {
			// The field takes the value as it is: stored as given.
			if reflect.ValueOf(e.value).IsZero() && (e.field.HasDefaultValue || e.field.AutoCreateTime > 0 || e.field.AutoUpdateTime > 0) {
				return fmt.Errorf("%w: %s = %#v: on create GORM stores the field's default instead of its zero value", ErrUnsupportedCondition, e.field.Name, e.value)
			}
			continue
		}
		if !scratch.IsValid() {
			scratch = reflect.New(c.dest.Type().Elem()).Elem()
		}
		if again {
			before = e.field.ReflectValueOf(ctx, scratch).Interface()
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

// sameBasicType reports whether v is of the field's own type, a basic kind
// (a string, a number, a boolean) that GORM sets as it is.
func sameBasicType(v any, f *schema.Field) bool {
	t := reflect.TypeOf(v)
	if t == nil || t != f.FieldType {
		return false
	}
	_, valuer := v.(driver.Valuer)
	return !valuer && basicKind(t.Kind())
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

// lookUpField finds the field of a column or Go field name as GORM does,
// and, as GORM 1.31.1 and later do, a column named in another case
// ("NAME"), which the database matches too: the same on every GORM that
// safefind supports.
func lookUpField(s *schema.Schema, name string) *schema.Field {
	if f := s.LookUpField(name); f != nil {
		return f
	}
	var found *schema.Field
	for _, f := range s.Fields {
		if f.DBName != "" && strings.EqualFold(f.DBName, name) {
			if found != nil {
				return nil // ambiguous
			}
			found = f
		}
	}
	return found
}
