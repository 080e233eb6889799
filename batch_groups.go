package safefind

import (
	"fmt"
	"reflect"
	"slices"

	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// A batch's groups: the distinct keys of its elements, in key order, and
// the rows matched back to them by key, never by position.

// group is one distinct key of the input and the elements that carry it.
type group struct {
	raw     []any  // key values, as the fields hold them
	vals    []any  // key values, as the database compares them
	id      string // vals, encoded: equal keys have equal ids
	idx     []int  // the elements, first one first
	row     reflect.Value
	created bool
}

// group reads every element's key, and sorts and groups the distinct keys.
func (b *batch) group() error {
	ctx := b.c.tx.Statement.Context
	byID := map[string]*group{}
	for i := range b.elems.Len() {
		e := b.elem(i)
		raw, vals := make([]any, len(b.keys)), make([]any, len(b.keys))
		for k, f := range b.keys {
			raw[k], _ = f.ValueOf(ctx, e)
			v, err := keyValue(raw[k])
			if err != nil {
				return fmt.Errorf("%w: element %d, key %s: %w", ErrUnsupportedCondition, i, f.Name, err)
			}
			if v == nil {
				return fmt.Errorf("%w: element %d has a NULL %s; a unique index does not hold NULLs", ErrUnsupportedCondition, i, f.Name)
			}
			vals[k] = v
		}
		for _, eq := range b.c.eqs {
			for k, f := range b.keys {
				if f != eq.field {
					continue
				}
				v, err := keyValue(eq.value)
				if err != nil || keyID([]any{v}) != keyID([]any{vals[k]}) {
					return fmt.Errorf("%w: element %d has %s %v, the chain says %v", ErrUnsupportedCondition, i, f.Name, vals[k], eq.value)
				}
			}
		}
		id := keyID(vals)
		if g, ok := byID[id]; ok {
			if b.c.op == opUpsertAll {
				if f := b.differs(b.elem(g.idx[0]), e); f != nil {
					return fmt.Errorf("%w: elements %d and %d have key %v and different %s", ErrConflictingDuplicates, g.idx[0], i, raw, f.Name)
				}
			}
			g.idx = append(g.idx, i)
			continue
		}
		g := &group{raw: raw, vals: vals, id: id, idx: []int{i}}
		byID[id] = g
		b.groups = append(b.groups, g)
	}
	slices.SortFunc(b.groups, func(x, y *group) int { return compareKeys(x.vals, y.vals) })
	return nil
}

// keysIn is a batch's key list, as a condition: (a, b) IN ((?, ?), ...).
// It has a type of its own so that the guard does not take it for one of
// the caller's conditions.
type keysIn struct{ clause.IN }

func (b *batch) keysIn(groups []*group) keysIn {
	values := make([]any, len(groups))
	if len(b.keys) == 1 {
		for i, g := range groups {
			values[i] = g.vals[0]
		}
		return keysIn{clause.IN{Column: clause.Column{Table: clause.CurrentTable, Name: b.keys[0].DBName}, Values: values}}
	}
	cols := make([]clause.Column, len(b.keys))
	for k, f := range b.keys {
		cols[k] = clause.Column{Table: clause.CurrentTable, Name: f.DBName}
	}
	for i, g := range groups {
		values[i] = g.vals
	}
	return keysIn{clause.IN{Column: cols, Values: values}}
}

// match gives each row of rows to the group with its key.
func (b *batch) match(groups []*group, rows reflect.Value, created bool) {
	ctx := b.c.tx.Statement.Context
	byID := make(map[string]*group, len(groups))
	for _, g := range groups {
		byID[g.id] = g
	}
	vals := make([]any, len(b.keys))
	for i := range rows.Len() {
		row := rows.Index(i)
		for k, f := range b.keys {
			v, _ := f.ValueOf(ctx, row)
			vals[k], _ = keyValue(v)
		}
		if g, ok := byID[keyID(vals)]; ok && !g.row.IsValid() {
			g.row, g.created = row, created
		}
	}
}

func unsettled(groups []*group) []*group {
	var out []*group
	for _, g := range groups {
		if !g.row.IsValid() {
			out = append(out, g)
		}
	}
	return out
}

// remember records the primary keys of the rows this call inserted that no
// group took.
func (b *batch) remember(created reflect.Value) {
	taken := map[string]bool{}
	for _, g := range b.groups {
		if g.created && g.row.IsValid() {
			taken[b.pkID(g.row)] = true
		}
	}
	for i := range created.Len() {
		if id := b.pkID(created.Index(i)); id != "" && !taken[id] {
			if b.ours == nil {
				b.ours = map[string]bool{}
			}
			b.ours[id] = true
		}
	}
}

// pkID encodes a row's primary key, or "" if the model has none.
func (b *batch) pkID(row reflect.Value) string {
	pks := b.c.schema.PrimaryFields
	if len(pks) == 0 {
		return ""
	}
	vals := make([]any, len(pks))
	for i, f := range pks {
		v, _ := f.ValueOf(b.c.tx.Statement.Context, row)
		vals[i], _ = keyValue(v)
	}
	return keyID(vals)
}

// differs returns a column that an INSERT writes and the elements x and y
// hold with different values (GORM's timestamps aside), or nil.
func (b *batch) differs(x, y reflect.Value) *schema.Field {
	ctx := b.c.tx.Statement.Context
	for _, f := range b.c.schema.Fields {
		if f.DBName == "" || !f.Creatable || f.AutoCreateTime > 0 || f.AutoUpdateTime > 0 {
			continue
		}
		xv, _ := f.ValueOf(ctx, x)
		yv, _ := f.ValueOf(ctx, y)
		xk, errX := keyValue(xv)
		yk, errY := keyValue(yv)
		if errX != nil || errY != nil || keyID([]any{xk}) != keyID([]any{yk}) {
			return f
		}
	}
	return nil
}
