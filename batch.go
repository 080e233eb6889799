package safefind

import (
	"fmt"
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// keysIn is a batch's key list, as a condition: (a, b) IN ((?, ?), ...).
// It has a type of its own so that the guard does not take it for one of
// the caller's conditions.
type keysIn struct{ clause.IN }

// batch is one FindOrCreateAll or CreateOrFindAll.
type batch struct {
	c      *call
	elems  reflect.Value // the caller's slice
	ptrs   bool          // elements are pointers to structs
	typ    reflect.Type  // the model struct
	keys   []*schema.Field
	groups []*group // the distinct keys, sorted

	// ours holds the primary keys of the rows this call inserted that no
	// group's key matched: the database stored the key otherwise than Go
	// holds it (a time cut to the column's precision, a default, a hook).
	// A row found later by the database's own comparison is ours if its
	// primary key is here.
	ours map[string]bool
}

// group is one distinct key of the input and the elements that carry it.
type group struct {
	raw     []any  // key values, as the fields hold them
	vals    []any  // key values, as the database compares them
	id      string // vals, encoded: equal keys have equal ids
	idx     []int  // the elements, first one first
	row     reflect.Value
	created bool
}

func all(tx *gorm.DB, rows any, keyColumns []string, insertFirst bool) (created []bool, err error) {
	op := opFindOrCreateAll
	if insertFirst {
		op = opCreateOrFindAll
	}
	c, err := newCall(tx, op)
	defer func() { c.finish(err) }()
	if err != nil {
		return nil, err
	}
	rv := reflect.ValueOf(rows)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Slice {
		return nil, fmt.Errorf("%w: rows must be a non-nil pointer to a slice, got %T", ErrInvalidDest, rows)
	}
	b := &batch{c: c, elems: rv.Elem(), typ: rv.Elem().Type().Elem()}
	if b.typ.Kind() == reflect.Pointer {
		b.ptrs, b.typ = true, b.typ.Elem()
	}
	if b.typ.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: rows must hold structs, got %T", ErrInvalidDest, rows)
	}
	n := b.elems.Len()
	for i := range n {
		if b.ptrs && b.elems.Index(i).IsNil() {
			return nil, fmt.Errorf("%w: element %d is nil", ErrInvalidDest, i)
		}
	}
	if len(keyColumns) == 0 {
		return nil, fmt.Errorf("%w: no key columns", ErrNoConditions)
	}
	if n == 0 {
		return []bool{}, nil
	}

	c.batch = true
	c.dest = reflect.New(b.typ)
	c.base = mark(tx.Session(&gorm.Session{}), c).Session(&gorm.Session{})
	if err := c.probeConditions(); err != nil {
		return nil, err
	}
	if err := b.resolveKeys(keyColumns); err != nil {
		return nil, err
	}
	if err := b.group(); err != nil {
		return nil, err
	}

	// Leave the caller's elements untouched until every chunk succeeded.
	chunks := func() error {
		size := b.chunkSize()
		for start := 0; start < len(b.groups); start += size {
			if err := c.tx.Statement.Context.Err(); err != nil {
				return err
			}
			chunk := b.groups[start:min(start+size, len(b.groups))]
			if err := b.resolve(chunk, insertFirst); err != nil {
				return err
			}
		}
		return nil
	}
	if !c.inTx && !c.tx.DryRun && !c.tx.SkipDefaultTransaction && hasCreateHooks(c.schema) {
		// As GORM's Create does for models with hooks: a hook's error
		// rolls back the rows.
		err = c.tx.Transaction(func(t *gorm.DB) error {
			c.tx, c.inTx = t, true
			c.base = mark(t.Session(&gorm.Session{}), c).Session(&gorm.Session{})
			return chunks()
		})
	} else {
		err = chunks()
	}
	if err != nil {
		return nil, err
	}
	created = make([]bool, n)
	if c.tx.DryRun {
		return created, nil // the statements were traced; nothing was read
	}
	for _, g := range b.groups {
		for _, i := range g.idx {
			e := b.elems.Index(i)
			if b.ptrs {
				e = e.Elem()
			}
			e.Set(g.row)
		}
		created[g.idx[0]] = g.created
	}
	return created, nil
}

// resolveKeys finds the key fields and checks that a unique constraint
// covers them.
func (b *batch) resolveKeys(names []string) error {
	s := b.c.schema
	seen := map[*schema.Field]bool{}
	for _, name := range names {
		f := s.LookUpField(name)
		if f == nil {
			return fmt.Errorf("%w: key column %q", ErrUnknownColumn, name)
		}
		if !f.Creatable {
			return fmt.Errorf("%w: key column %q is not written on create", ErrUnknownColumn, name)
		}
		if !seen[f] {
			seen[f] = true
			b.keys = append(b.keys, f)
		}
	}
	return b.c.p.checkUnique(b.c, b.keys)
}

// group reads every element's key, and sorts and groups the distinct keys.
func (b *batch) group() error {
	ctx := b.c.tx.Statement.Context
	byID := map[string]*group{}
	for i := range b.elems.Len() {
		e := b.elems.Index(i)
		if b.ptrs {
			e = e.Elem()
		}
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

// chunkSize is the most keys per statement: the configured size, within the
// bind-parameter limit for an INSERT of every column and for a read of the
// keys beside the chain's own conditions.
func (b *batch) chunkSize() int {
	limit := b.c.d.MaxParams()
	insert := limit / max(len(b.c.schema.DBNames), 1)
	read := (limit - b.c.whereVars) / max(len(b.keys), 1)
	return max(1, min(b.c.p.cfg.chunk, insert, read))
}

// resolve finds or creates the rows of one chunk.
func (b *batch) resolve(chunk []*group, insertFirst bool) error {
	pending := chunk
	if !insertFirst {
		var err error
		if pending, err = b.read(pending, false); err != nil {
			return err
		}
		b.c.record(EventFound, len(chunk)-len(pending))
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		lost, err := b.insertRetrying(pending)
		if err != nil {
			return err
		}
		if len(lost) == 0 {
			return nil
		}
		if b.c.tx.DryRun {
			_, err := b.read(lost, true)
			return err
		}
		b.c.record(EventConflict, len(lost))
		unresolved, err := b.read(lost, true)
		if err != nil {
			return err
		}
		b.c.record(EventFound, len(lost)-len(unresolved))
		if len(unresolved) == 0 {
			return nil
		}
		if len(b.ours) == 0 {
			if err := b.c.staleSnapshot(); err != nil {
				return err
			}
		}
		// Try the batch again only where it made progress (MySQL's INSERT
		// fails whole); keys it cannot settle go one by one, where the
		// database's own comparison finds them (a case-insensitive
		// collation, a time cut to the column's precision) and the
		// single-row retries apply.
		if len(b.ours) > 0 || len(unresolved) == len(pending) || attempt >= b.c.p.cfg.retries {
			return b.oneByOne(unresolved, false)
		}
		b.c.record(EventRetry, len(unresolved))
		pending = unresolved
	}
	return nil
}

// insertRetrying is insert, tried again when it fails with a deadlock or a
// busy database outside a transaction: the INSERT was then a transaction of
// its own, rolled back whole, and nothing else of the caller's is lost. On
// MySQL/MariaDB a multi-row INSERT that fails on a duplicate rolls back its
// rows while others may wait on them; InnoDB turns those waits into gap
// locks, and three or more overlapping batches can deadlock even in key
// order. Inside a transaction the error is the caller's to retry
// (IsRetryable).
func (b *batch) insertRetrying(groups []*group) ([]*group, error) {
	for attempt := 0; ; attempt++ {
		lost, err := b.insert(groups)
		if err == nil || b.c.inTx || attempt >= maxStatementRetries || !b.c.d.RetryStatement(err) {
			return lost, err
		}
		b.c.record(EventRetry, 1)
		if err := b.c.tx.Statement.Context.Err(); err != nil {
			return nil, err
		}
	}
}

// read selects the rows of groups by key, and returns the groups it did not
// find. Without latest it is the call's first read, which a replica may
// serve; with latest it reads on the primary and adds the dialect's locking
// read inside a transaction.
func (b *batch) read(groups []*group, latest bool) ([]*group, error) {
	return b.readFrom(b.c.lookup(latest), groups, latest)
}

// readFrom is read on the lookup q: the chain's, or the table's alone.
func (b *batch) readFrom(q *gorm.DB, groups []*group, latest bool) ([]*group, error) {
	c := b.c
	q = q.Where(b.keysIn(groups))
	if latest && c.inTx && !c.locked {
		if l := c.d.LatestRead(); l != nil {
			q = q.Clauses(l)
		}
	}
	out := reflect.New(reflect.SliceOf(b.typ))
	if err := q.Find(out.Interface()).Error; err != nil {
		return nil, err
	}
	b.match(groups, out.Elem(), false)
	return unsettled(groups), nil
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

// oneByOne settles the groups one at a time, by the database's own
// comparison of keys: a read, then CreateOrFind's path. A row read is this
// call's own when its primary key is among the rows this call inserted, or
// when inserted says every group's row was.
func (b *batch) oneByOne(groups []*group, inserted bool) error {
	for _, g := range groups {
		e := b.elems.Index(g.idx[0])
		if b.ptrs {
			e = e.Elem()
		}
		dest := reflect.New(b.typ)
		dest.Elem().Set(e)
		conds := make(map[string]any, len(b.keys))
		for k, f := range b.keys {
			conds[f.DBName] = g.raw[k]
		}
		c, err := begin(b.c.tx, dest.Interface(), []any{conds}, b.c.op)
		if err != nil {
			return err
		}
		found, err := c.read(true)
		if err != nil {
			return err
		}
		if !found && inserted {
			return fmt.Errorf("safefind: a row inserted into %s could not be read back by its key", b.c.table)
		}
		created := inserted || found && b.ours[b.pkID(dest.Elem())]
		if found && !created {
			b.c.record(EventFound, 1)
		}
		if !found {
			if created, err = c.createOrRead(true); err != nil {
				return err
			}
		}
		g.row, g.created = dest.Elem(), created
	}
	return nil
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
