package safefind

import (
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// The batch driver: FindOrCreateAll and CreateOrFindAll, chunk by chunk,
// with the steps the single-row driver uses (steps.go) and its path for
// the keys a batch cannot settle.
// batch is one FindOrCreateAll or CreateOrFindAll.
type batch struct {
	c      *call
	elems  reflect.Value // the caller's slice
	ptrs   bool          // elements are pointers to structs
	typ    reflect.Type  // the model struct
	keys   []*schema.Field
	groups []*group // the distinct keys, sorted

	insertFirst bool // CreateOrFindAll and UpsertAll: no first read
	plan        plan

	// The upsert (UpsertAll, or Assign on a batch call; batch_upsert.go):
	// the columns an existing row gets (not nil: the batch upserts), the
	// UpdatedAt columns moved when one of them changes, and the style.
	update, touch []string
	style         upsertStyle
	// live: the soft-delete columns a row met must hold NULL to be the
	// lookup's (liveColumns).
	live []string
	// marks: the batch's INSERT is marked (MarkMet) rather than plain, on
	// a table without UPDATE triggers; read at its first INSERT.
	marks *bool

	// known holds the primary keys of the rows read before the upsert, in
	// a transaction that holds the write lock (upsertReadFirst).
	known  map[string]bool
	locked bool

	// ours holds the primary keys of the rows this call inserted that no
	// group's key matched: the database stored the key otherwise than Go
	// holds it (a time cut to the column's precision, a default, a hook).
	// A row found later by the database's own comparison is ours if its
	// primary key is here.
	ours map[string]bool
}

// writeAll is the batch driver's entry: it checks the arguments, inspects
// the chain, groups the elements by key and settles the groups, chunk by
// chunk, as the plan says; then it gives every element its row.
func writeAll(tx *gorm.DB, rows any, keyColumns []string, op string, updateColumns []string) (created []bool, err error) {
	insertFirst := op != opFindOrCreateAll
	c, err := newCall(tx, op)
	defer func() { c.finish(err) }()
	if err != nil {
		return nil, err
	}
	rv := reflect.ValueOf(rows)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Slice {
		return nil, fmt.Errorf("%w: rows must be a non-nil pointer to a slice, got %T", ErrInvalidDest, rows)
	}
	b := &batch{c: c, elems: rv.Elem(), typ: rv.Elem().Type().Elem(), insertFirst: insertFirst}
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

	c.batch = true
	c.dest = reflect.New(b.typ)
	c.base = lookupFor(tx.Session(&gorm.Session{}), c)
	if len(chainValues(tx.Statement, assignsIndex)) > 0 {
		c.strict = true // an upsert: its INSERT comes first
	}
	if err := c.probeConditions(); err != nil {
		return nil, err
	}
	if err := b.keyFields(keyColumns); err != nil {
		return nil, err
	}
	if err := b.refuseKeyChanges(); err != nil {
		return nil, err
	}
	switch {
	case op == opUpsertAll && (len(c.attrs) > 0 || len(c.assigns) > 0):
		return nil, fmt.Errorf("%w: UpsertAll takes its values from the rows, not from Attrs or Assign", ErrInvalidAttributes)
	case op == opUpsertAll:
		err = b.resolveUpdate(updateColumns)
	case len(c.assigns) > 0:
		err = b.assignUpdate()
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return []bool{}, nil // the arguments were checked; nothing is sent
	}
	if err := c.p.checkUnique(c, b.keys); err != nil {
		return nil, err
	}
	if err := b.refuseAssociations(); err != nil {
		return nil, err
	}
	if err := b.group(); err != nil {
		return nil, err
	}

	// Leave the caller's elements untouched until every chunk succeeded.
	b.plan = c.planSkipping()
	if b.update != nil {
		var ok bool
		if b.live, ok = c.liveColumns(); !ok {
			return nil, fmt.Errorf("%w: %s has query clauses other than GORM's soft delete, which a batch upsert cannot apply", ErrUnsupportedCondition, c.schema.Name)
		}
		if b.style, err = b.chooseUpsert(); err != nil {
			return nil, err
		}
		b.plan.conflict, b.plan.existing = conflictUpdates, existingUpdated
		if !c.inTx && !c.tx.DryRun {
			// All or nothing: a row the upsert may not update fails the
			// call once the statement ran.
			b.plan.scope = scopeTransaction
		}
	}
	if b.plan.scope == scopeTransaction {
		// As GORM's Create does for models with hooks: a hook's error
		// rolls back the rows. The transaction is the call's own: one
		// that loses a deadlock or a serialization conflict runs again.
		retries := 0
		err = c.retryStatement(&retries, func() error {
			b.reset()
			return tx.Transaction(func(t *gorm.DB) error {
				return b.with(c.inTransaction(t)).chunks()
			})
		})
	} else {
		err = b.chunks()
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
			b.elem(i).Set(g.row)
		}
		created[g.idx[0]] = g.created
	}
	return created, nil
}

// reset forgets the rows an attempt that was rolled back gave the groups.
func (b *batch) reset() {
	for _, g := range b.groups {
		g.row, g.created = reflect.Value{}, false
	}
}

// with returns a batch like b whose statements belong to c.
func (b *batch) with(c *call) *batch {
	in := *b
	in.c = c
	return &in
}

// elem returns the i-th element of the caller's slice, a struct.
func (b *batch) elem(i int) reflect.Value {
	e := b.elems.Index(i)
	if b.ptrs {
		e = e.Elem()
	}
	return e
}

// chunks settles the groups, a chunk at a time.
func (b *batch) chunks() error {
	size := b.chunkSize()
	for start := 0; start < len(b.groups); start += size {
		if err := b.c.tx.Statement.Context.Err(); err != nil {
			return err
		}
		if err := b.resolve(b.groups[start:min(start+size, len(b.groups))]); err != nil {
			return err
		}
	}
	return nil
}

// keyFields finds the key fields.
func (b *batch) keyFields(names []string) error {
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
	return nil
}

// chunkSize is the most keys per statement: the configured size, within the
// bind-parameter limit for an INSERT of every column (beside the
// parameters of its conflict clause, the chain's equalities in each of its
// guards) and for a read of the keys beside the chain's own conditions.
func (b *batch) chunkSize() int {
	limit := b.c.d.MaxParams()
	clauseVars := 16 + len(b.c.eqs)*(len(b.update)+len(b.touch)+4)
	insert := (limit - clauseVars) / max(len(b.c.schema.DBNames), 1)
	read := (limit - b.c.whereVars) / max(len(b.keys), 1)
	return max(1, min(b.c.p.cfg.chunk, insert, read))
}

// resolve finds or creates the rows of one chunk.
func (b *batch) resolve(chunk []*group) error {
	c := b.c
	if b.plan.conflict == conflictUpdates {
		return b.resolveUpserts(chunk)
	}
	pending := chunk
	if !b.insertFirst {
		var err error
		if pending, err = b.read(pending, false); err != nil {
			return err
		}
		c.record(EventFound, len(chunk)-len(pending))
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		lost, err := b.insert(pending)
		if err != nil || len(lost) == 0 {
			return err
		}
		if c.tx.DryRun {
			_, err := b.read(lost, true)
			return err
		}
		c.record(EventConflict, len(lost))
		unresolved, err := b.read(lost, true)
		if err != nil {
			return err
		}
		c.record(EventFound, len(lost)-len(unresolved))
		if len(unresolved) == 0 {
			return nil
		}
		// Keys the batch cannot settle go one by one, where the database's
		// own comparison finds them (a case-insensitive collation, a time
		// cut to the column's precision) and the single-row retries apply:
		// rows this call inserted under another key, and a retry that made
		// no progress (MySQL's INSERT fails whole).
		if len(b.ours) > 0 {
			return b.oneByOne(unresolved, false)
		}
		again, err := c.unresolvedConflict(attempt)
		if err != nil {
			return err
		}
		if !again || len(unresolved) == len(pending) {
			return b.oneByOne(unresolved, false)
		}
		c.record(EventRetry, len(unresolved))
		pending = unresolved
	}
	return nil
}

// resolveUpserts upserts the rows of one chunk, then reads the rows the
// upsert did not return: left as they were, or met by another unique key.
// A row not found was deleted after the upsert met it (outside a
// transaction), or the conflict is on another unique key: the upsert runs
// again for those, while [WithConflictRetries] allows.
func (b *batch) resolveUpserts(chunk []*group) error {
	c := b.c
	pending := chunk
	for attempt := 0; ; attempt++ {
		if err := b.upsert(pending); err != nil {
			return err
		}
		rest := unsettled(pending)
		if len(rest) == 0 {
			return nil
		}
		missing, err := b.read(rest, true)
		if err != nil || c.tx.DryRun {
			return err
		}
		c.record(EventFound, len(rest)-len(missing))
		if len(missing) == 0 {
			return nil
		}
		// Keys the database compares otherwise than Go (a case-insensitive
		// collation, a time cut to the column's precision): by its own
		// comparison, one by one.
		if missing, err = b.findOneByOne(missing); err != nil || len(missing) == 0 {
			return err
		}
		again, err := c.unresolvedConflict(attempt)
		if err != nil {
			return err
		}
		if !again {
			return fmt.Errorf("%w: %s, key %v: the lookup finds no row with the key after the upsert: the row holding it is soft-deleted, outside the chain's conditions, stored with a key no lookup finds (a time finer than the column, on MySQL), or deleted each time", ErrConflictNotFound, c.table, missing[0].raw)
		}
		c.record(EventRetry, len(missing))
		pending = missing
	}
}

// read selects the rows of groups by key with the call's lookup, the first
// read or the latest (see [call.reader]), and returns the groups it did not
// find.
func (b *batch) read(groups []*group, latest bool) ([]*group, error) {
	return b.readFrom(b.c.reader(latest), groups)
}

// readFrom is read on the lookup q: the chain's, or the table's alone.
func (b *batch) readFrom(q *gorm.DB, groups []*group) ([]*group, error) {
	out := reflect.New(reflect.SliceOf(b.typ))
	if err := q.Where(b.keysIn(groups)).Find(out.Interface()).Error; err != nil {
		return nil, err
	}
	b.match(groups, out.Elem(), false)
	return unsettled(groups), nil
}
