package safefind

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// FindOrCreateAll finds or creates one row per element of rows, a pointer to
// a slice of model structs (or of pointers to them), by the key columns
// named (field or column names; one or more, a composite key included),
// in one round trip per chunk and each step:
//
//  1. one SELECT for all the keys of a chunk;
//  2. one INSERT of the missing rows, sorted by key, that skips the rows
//     another caller created meanwhile (ON CONFLICT DO NOTHING RETURNING on
//     PostgreSQL and SQLite; on MySQL/MariaDB a plain multi-row INSERT,
//     all or nothing, tried again without the rows found after a conflict);
//  3. one SELECT for the rows that lost a race (a shared locking read inside
//     a MySQL/MariaDB transaction).
//
// Rows are inserted in key order, so concurrent batches with overlapping
// keys lock them in the same order and cannot deadlock on each other. No
// savepoint is opened, on any dialect.
//
// Each element carries its key values and the attributes to create it with;
// the chain's equalities (tx.Where(...)) are set on every row created, and
// its conditions and locking clause apply to the reads. After the call every
// element holds its stored row, in the caller's order; duplicates of one key
// all receive the same row. created is aligned with rows: true for the
// elements whose row this call inserted (the first element of each key).
// Hooks run as for Create: BeforeSave and BeforeCreate on the rows to insert,
// AfterCreate and AfterSave on the rows created.
//
// Chunks hold at most [WithChunkSize] keys (default 1000), fewer where the
// database's bind-parameter limit requires. An empty slice sends nothing.
// The key must be covered by a primary key or unique index, declared on the
// model or found in the database's catalog, or the call fails with
// [ErrKeyNotUnique]. Errors are as for [FindOrCreate]; on an error the
// elements are left as they were.
func FindOrCreateAll(tx *gorm.DB, rows any, keyColumns ...string) (created []bool, err error) {
	return all(tx, rows, keyColumns, false)
}

// CreateOrFindAll is the insert-first form of [FindOrCreateAll], for keys
// that are usually new: one INSERT of all the rows of a chunk that skips the
// existing ones, then one SELECT for those. On MySQL/MariaDB, whose
// multi-row INSERT fails whole on a conflict, a conflict is followed by the
// steps of FindOrCreateAll. No savepoint is opened, on any dialect. As with
// [CreateOrFind], the chain may carry only column equalities.
func CreateOrFindAll(tx *gorm.DB, rows any, keyColumns ...string) (created []bool, err error) {
	return all(tx, rows, keyColumns, true)
}

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
	c.base = tx.Session(&gorm.Session{}).Set(callKey, c).Session(&gorm.Session{})
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
			c.base = t.Session(&gorm.Session{}).Set(callKey, c).Session(&gorm.Session{})
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

// maxStatementRetries bounds the retries of a statement that failed with a
// retryable error outside a transaction.
const maxStatementRetries = 5

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
	c.target = out.Interface()
	if err := q.Find(c.target).Error; err != nil {
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

// insert inserts the rows of groups, in key order, and returns the groups
// whose row another caller created: skipped by the INSERT, or, on
// MySQL/MariaDB, all of them when the INSERT met a conflict.
func (b *batch) insert(groups []*group) (lost []*group, err error) {
	c := b.c
	ctx := c.tx.Statement.Context
	rowsPtr := reflect.New(reflect.SliceOf(b.typ))
	rowsPtr.Elem().Set(reflect.MakeSlice(rowsPtr.Elem().Type(), len(groups), len(groups)))
	rows := rowsPtr.Elem()
	for i, g := range groups {
		e := b.elems.Index(g.idx[0])
		if b.ptrs {
			e = e.Elem()
		}
		rows.Index(i).Set(e)
		if err := c.assignTo(ctx, rows.Index(i)); err != nil {
			return nil, err
		}
	}
	hooks := !c.tx.Statement.SkipHooks
	if hooks {
		if err := b.callHooks(rowsPtr, beforeCreate); err != nil {
			return nil, err
		}
	}

	// GORM renders the INSERT (defaults, timestamps, serializers); safefind
	// sends it and reads what it returns. GORM's own Create would scan the
	// RETURNING rows into the elements by position, which is wrong as soon
	// as a row in the middle is skipped.
	// RETURNING * where GORM renders it for this server (not on MySQL, nor
	// SQLite before 3.35).
	skip := c.d.SkipOnConflict()
	dry := c.insertDB(&gorm.Session{DryRun: true, SkipHooks: true, SkipDefaultTransaction: true, Logger: silent{c.tx.Logger}}).
		Clauses(append(skip, clause.Returning{})...).Create(rowsPtr.Interface())
	if dry.Error != nil {
		return nil, dry.Error
	}
	returning := slices.Contains(c.tx.Callback().Create().Clauses, "RETURNING")
	if len(skip) > 0 && !returning {
		// A skipped row leaves no trace without RETURNING.
		return nil, fmt.Errorf("%w: batches need INSERT ... RETURNING here (SQLite 3.35 or newer)", ErrUnsupportedDialect)
	}
	exec := c.tx.Session(&gorm.Session{NewDB: true, Logger: quietConflicts{c.tx.Logger, c.tx.Dialector}}).Clauses()
	exec.Statement.SQL.WriteString(dry.Statement.SQL.String())
	exec.Statement.Vars = dry.Statement.Vars
	exec.Statement.Table = dry.Statement.Table
	keepResolver(c.tx, exec)

	if c.tx.DryRun {
		// Traced, not sent: the rows stay unsettled, and are reported lost
		// so that the read of the winners is traced too.
		return groups, exec.Callback().Raw().Execute(exec).Error
	}
	var createdPtr reflect.Value
	if returning {
		createdPtr = reflect.New(reflect.SliceOf(b.typ))
		res, err := exec.Rows()
		if err == nil {
			// A duplicate may surface while the rows are read (MariaDB).
			if res.Next() {
				err = c.tx.Session(&gorm.Session{NewDB: true}).ScanRows(res, createdPtr.Interface())
			}
			err = errors.Join(err, res.Err(), res.Close())
		}
		if err != nil {
			if len(skip) == 0 && isDuplicate(c.tx.Dialector, err) {
				return groups, nil // all or nothing: nothing was inserted
			}
			return nil, err
		}
		created := createdPtr.Elem()
		b.match(groups, created, true)
		b.remember(created)
		lost = unsettled(groups)
	} else {
		err := exec.Callback().Raw().Execute(exec).Error
		if err != nil {
			if isDuplicate(c.tx.Dialector, err) {
				return groups, nil // all or nothing: nothing was inserted
			}
			return nil, err
		}
		// Every row was inserted; read them back, by key alone (the chain's
		// filters may not hold for them), for their ids and defaults.
		table := onPrimary(c.insertDB(&gorm.Session{}).Set(callKey, c))
		missing, err := b.readFrom(table, groups, false)
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			// Stored otherwise than Go holds the key: find them one by one.
			if err := b.oneByOne(missing, true); err != nil {
				return nil, err
			}
		}
		createdPtr = reflect.New(reflect.SliceOf(b.typ))
		createdPtr.Elem().Set(reflect.MakeSlice(createdPtr.Elem().Type(), len(groups), len(groups)))
		for i, g := range groups {
			createdPtr.Elem().Index(i).Set(g.row)
			g.row, g.created = createdPtr.Elem().Index(i), true
		}
	}
	n := createdPtr.Elem().Len()
	c.record(EventCreated, n)
	if hooks && n > 0 {
		// The groups hold the elements of created: they see what hooks change.
		if err := b.callHooks(createdPtr, afterCreate); err != nil {
			return nil, err
		}
	}
	return lost, nil
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

type hookKind int

const (
	beforeCreate hookKind = iota
	afterCreate
)

// callHooks runs the model's create hooks on every row of rows (a slice
// behind rowsPtr), in GORM's order. As GORM does, each hook gets a DB whose
// statement holds the rows and the index of the current one, so that
// tx.Statement.SetColumn works; the statement is the hooks' own, never the
// caller's.
func (b *batch) callHooks(rowsPtr reflect.Value, kind hookKind) error {
	own := b.c.tx.Session(&gorm.Session{NewDB: true}).Clauses()
	st := own.Statement
	st.Schema, st.Table = b.c.schema, b.c.table
	st.Model, st.Dest, st.ReflectValue = rowsPtr.Interface(), rowsPtr.Interface(), rowsPtr.Elem()
	db := own.Session(&gorm.Session{NewDB: true})
	rows := rowsPtr.Elem()
	for i := range rows.Len() {
		st.CurDestIndex = i
		v := rows.Index(i).Addr().Interface()
		var err error
		switch kind {
		case beforeCreate:
			if h, ok := v.(callbacks.BeforeSaveInterface); ok {
				err = h.BeforeSave(db)
			}
			if h, ok := v.(callbacks.BeforeCreateInterface); ok && err == nil {
				err = h.BeforeCreate(db)
			}
		case afterCreate:
			if h, ok := v.(callbacks.AfterCreateInterface); ok {
				err = h.AfterCreate(db)
			}
			if h, ok := v.(callbacks.AfterSaveInterface); ok && err == nil {
				err = h.AfterSave(db)
			}
		}
		if err == nil {
			err = db.Error
		}
		if err != nil {
			return err
		}
	}
	return own.Error
}

// keyValue returns the value a key is compared by: a driver.Valuer's value,
// or v itself; nil for NULL.
func keyValue(v any) (any, error) {
	if isNull(v) {
		return nil, nil
	}
	if valuer, ok := v.(driver.Valuer); ok {
		return valuer.Value()
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer {
		return keyValue(rv.Elem().Interface())
	}
	return v, nil
}

// keyID encodes key values so that equal keys, and only they, give equal
// strings.
func keyID(vals []any) string {
	var sb strings.Builder
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			sb.WriteString("s" + strconv.Itoa(len(v)) + ":" + v)
		case []byte:
			sb.WriteString("b" + strconv.Itoa(len(v)) + ":" + string(v))
		case time.Time:
			sb.WriteString("t" + v.UTC().Format(time.RFC3339Nano))
		case bool:
			sb.WriteString("o" + strconv.FormatBool(v))
		default:
			switch rv := reflect.ValueOf(v); rv.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				sb.WriteString("i" + strconv.FormatInt(rv.Int(), 10))
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				sb.WriteString("i" + strconv.FormatUint(rv.Uint(), 10))
			case reflect.Float32, reflect.Float64:
				sb.WriteString("f" + strconv.FormatFloat(rv.Float(), 'g', -1, 64))
			case reflect.String:
				sb.WriteString("s" + strconv.Itoa(rv.Len()) + ":" + rv.String())
			default:
				s := fmt.Sprintf("%T:%v", v, v)
				sb.WriteString("x" + strconv.Itoa(len(s)) + ":" + s)
			}
		}
		sb.WriteByte(0)
	}
	return sb.String()
}

// compareKeys orders keys, the same way in every process, so that
// concurrent batches insert overlapping keys in the same order.
func compareKeys(a, b []any) int {
	for i := range a {
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareValues(a, b any) int {
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case []byte:
		if y, ok := b.([]byte); ok {
			return bytes.Compare(x, y)
		}
	case time.Time:
		if y, ok := b.(time.Time); ok {
			return x.Compare(y)
		}
	}
	ra, rb := reflect.ValueOf(a), reflect.ValueOf(b)
	if fa, ok := number(ra); ok {
		if fb, ok := number(rb); ok {
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			// Beyond float64's precision, fall through to the encoding.
		}
	}
	return strings.Compare(keyID([]any{a}), keyID([]any{b}))
}

func number(v reflect.Value) (float64, bool) {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), !math.IsNaN(v.Float())
	}
	return 0, false
}

// silent is a logger that drops GORM's trace of the DryRun that renders a
// batch INSERT: the statement is traced when it is sent.
type silent struct{ logger.Interface }

func (silent) Trace(context.Context, time.Time, func() (string, int64), error) {}
