package safefind

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// The call's request beyond its lookup: the chain's Attrs and Assign, read
// as FirstOrCreate reads them. Attrs are set on the row to create only.
// Assign is set on the row to create and, when the row exists (found by
// the first read, or created by another caller), updated on it as
// FirstOrCreate updates it (update.go).
//
// GORM keeps both in unexported Statement fields (attrs and assigns).
// safefind reads them there; Initialize refuses a GORM whose Statement no
// longer has them, so that an upgrade fails loudly, never with Attrs and
// Assign silently ignored. What GORM would silently drop (a column that is
// not a field, a condition that is not column = value) safefind refuses.

// assignment is a field and the value that Attrs or Assign gives it.
type assignment struct {
	field *schema.Field
	value any
}

// The index of gorm.Statement's attrs and assigns fields; nil if this GORM
// has no such field of type []interface{}.
var (
	attrsIndex   = statementField("attrs")
	assignsIndex = statementField("assigns")
)

func statementField(name string) []int {
	f, ok := reflect.TypeFor[gorm.Statement]().FieldByName(name)
	if !ok || f.Type != reflect.TypeFor[[]any]() {
		return nil
	}
	return f.Index
}

// chainValues returns what the chain gave Attrs or Assign (the field at
// index of stmt).
func chainValues(stmt *gorm.Statement, index []int) []any {
	f := reflect.ValueOf(stmt).Elem().FieldByIndex(index)
	return *(*[]any)(unsafe.Pointer(f.UnsafeAddr()))
}

// readRequest reads the chain's Attrs and Assign, from the caller's
// statement as FirstOrCreate reads them, and checks them against the
// lookup: it runs on the lookup statement (stmt, after the chain's scopes),
// once the lookup's equalities are collected. Attrs or Assign that a scope
// set are refused: FirstOrCreate ignores them (a statement's clone, which
// scopes work on, starts without them).
func (c *call) readRequest(stmt *gorm.Statement) error {
	if stmt != c.tx.Statement && (len(chainValues(stmt, attrsIndex)) > 0 || len(chainValues(stmt, assignsIndex)) > 0) {
		return fmt.Errorf("%w: Attrs or Assign set in a scope, which FirstOrCreate ignores; chain them before the call", ErrInvalidAttributes)
	}
	attrs, assigns := chainValues(c.tx.Statement, attrsIndex), chainValues(c.tx.Statement, assignsIndex)
	c.attrs, c.assigns, c.updates = nil, nil, nil
	if len(attrs) == 0 && len(assigns) == 0 {
		return nil
	}
	var err error
	if c.attrs, err = c.assignments(stmt, "Attrs", attrs); err != nil {
		return err
	}
	if c.assigns, err = c.assignments(stmt, "Assign", assigns); err != nil {
		return err
	}
	if err := c.checkAssignments(stmt.Context); err != nil {
		return err
	}
	if len(assigns) > 0 {
		return c.readUpdates(stmt, assigns)
	}
	return nil
}

// readUpdates reads Assign as FirstOrCreate updates a row that exists with
// it: the column = value pairs of GORM's BuildCondition over all of Assign's
// arguments, keyed by the column or field name as written, for Updates. A
// struct gives its non-zero columns (not its associations); a map gives its
// keys, associations by name included; Assign(T{...}, "Age") only Age.
func (c *call) readUpdates(stmt *gorm.Statement, assigns []any) error {
	exprs, err := buildCondition(stmt, assigns)
	if err != nil {
		return fmt.Errorf("%w: Assign: %w", ErrInvalidAttributes, err)
	}
	c.updates = make(map[string]any, len(exprs))
	for i := 0; i < len(exprs); i++ {
		switch e := exprs[i].(type) {
		case clause.AndConditions:
			exprs = append(exprs, e.Exprs...)
		case clause.Eq:
			switch col := e.Column.(type) {
			case string:
				c.updates[col] = e.Value
			case clause.Column:
				c.updates[col.Name] = e.Value
			}
		}
	}
	if len(c.updates) == 0 {
		c.updates = nil
	}
	return nil
}

// assignments turns the values given to Attrs or Assign (what) into
// assignments, as GORM's FirstOrCreate reads them: a struct gives its
// non-zero readable fields; a map, a clause.Eq, a list of expressions, or
// a column and its value ("age", 20) give column = value. Anything else is
// refused.
func (c *call) assignments(stmt *gorm.Statement, what string, values []any) ([]assignment, error) {
	var out []assignment
	var fromExprs func(exprs []clause.Expression) error
	fromExprs = func(exprs []clause.Expression) error {
		for _, e := range exprs {
			switch e := e.(type) {
			case clause.AndConditions:
				if err := fromExprs(e.Exprs); err != nil {
					return err
				}
				continue
			case clause.Eq:
				if col, ok := columnOf(e.Column); ok {
					f := c.schema.LookUpField(col.Name)
					if f == nil {
						return fmt.Errorf("%w: %q in %s", ErrUnknownColumn, col.Name, what)
					}
					out = append(out, assignment{f, e.Value})
					continue
				}
			}
			return fmt.Errorf("%w: %s(%s) is not column = value", ErrInvalidAttributes, what, render(stmt, e))
		}
		return nil
	}
	for _, v := range values {
		switch v.(type) {
		case []clause.Expression:
			if err := fromExprs(v.([]clause.Expression)); err != nil {
				return nil, err
			}
			continue
		case clause.Expression, map[string]string, map[any]any, map[string]any:
			exprs, err := buildCondition(stmt, []any{v})
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrInvalidAttributes, what, err)
			}
			if err := fromExprs(exprs); err != nil {
				return nil, err
			}
			continue
		}
		if s, ok := c.structSchema(v); ok {
			rv := reflect.Indirect(reflect.ValueOf(v))
			for _, f := range s.Fields {
				if !f.Readable {
					continue
				}
				fv, zero := f.ValueOf(stmt.Context, rv)
				if zero {
					continue
				}
				mf := c.schema.LookUpField(f.Name)
				if mf == nil {
					return nil, fmt.Errorf("%w: %s in %s(%T)", ErrUnknownColumn, f.Name, what, v)
				}
				out = append(out, assignment{mf, fv})
			}
			continue
		}
		// Not a struct: the whole list is one condition, as GORM reads
		// Attrs("age", 20).
		exprs, err := buildCondition(stmt, values)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidAttributes, what, err)
		}
		return out, fromExprs(exprs)
	}
	return out, nil
}

// structSchema returns the schema of v when v is a struct (or a pointer to
// one) that GORM can parse; the model's own when v is of the model's type.
func (c *call) structSchema(v any) (*schema.Schema, bool) {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if rv.Kind() != reflect.Struct {
		return nil, false
	}
	if rv.Type() == c.schema.ModelType {
		return c.schema, true
	}
	s, err := schema.Parse(v, &otherSchemas, c.tx.NamingStrategy)
	return s, err == nil
}

// otherSchemas caches the schemas of structs given to Attrs or Assign that
// are not the model.
var otherSchemas sync.Map

// checkAssignments refuses, before anything is sent, what would store a row
// the lookup cannot find or a value other than the one given: a value the
// field cannot take, or takes as another value; a value for one of the
// lookup's equality columns other than the lookup's.
func (c *call) checkAssignments(ctx context.Context) error {
	scratch := reflect.New(c.schema.ModelType).Elem()
	for _, list := range [][]assignment{c.attrs, c.assigns} {
		for _, a := range list {
			switch a.value.(type) {
			case clause.Expression, *gorm.DB:
				// GORM sets nothing for it on the row it creates.
				return fmt.Errorf("%w: %s = %v is an expression, which FirstOrCreate would drop from the row it creates", ErrInvalidAttributes, a.field.Name, a.value)
			}
			if err := a.field.Set(ctx, scratch, a.value); err != nil {
				return fmt.Errorf("%w: %s cannot take %#v: %w", ErrInvalidAttributes, a.field.Name, a.value, err)
			}
			for _, e := range c.eqs {
				if e.field != a.field {
					continue
				}
				if stored, _ := a.field.ValueOf(ctx, scratch); !storedAsGiven(stored, e.value) {
					return fmt.Errorf("%w: %s = %#v would change the lookup's %s = %#v: the row would leave the lookup", ErrInvalidAttributes, a.field.Name, a.value, a.field.DBName, e.value)
				}
			}
		}
	}
	return nil
}

// setRequest sets Attrs, then Assign, on the row to create, after the
// lookup's equalities, in FirstOrCreate's order.
func (c *call) setRequest(ctx context.Context) error {
	return c.setRequestOn(ctx, c.dest.Elem())
}

// setRequestOn sets Attrs, then Assign, on the struct v.
func (c *call) setRequestOn(ctx context.Context, v reflect.Value) error {
	for _, list := range [][]assignment{c.attrs, c.assigns} {
		for _, a := range list {
			if err := a.field.Set(ctx, v, a.value); err != nil {
				return fmt.Errorf("%w: %s cannot take %#v: %w", ErrInvalidAttributes, a.field.Name, a.value, err)
			}
		}
	}
	return nil
}
