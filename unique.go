package safefind

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// The unique-index guard. Find-or-create is safe under concurrency only when
// the database itself refuses a second row for the same lookup: a unique
// constraint whose columns are all among the lookup's equality columns.
// Without one, concurrent callers each insert their own row and nothing can
// detect it. So a lookup, or a batch's key, that no primary key or unique
// index covers is refused with ErrKeyNotUnique before anything is written.
//
// The model's schema answers first, without a round trip; a unique index or
// constraint that exists only in the database counts too, read once from
// the catalog and cached per table and column set. Partial unique indexes
// do not count (they make the key unique only among some rows), nor do
// indexes on expressions or deferred constraints.

// checkUnique reports ErrKeyNotUnique unless a primary key or unique index,
// on the model or in the database's catalog, has all its columns among keys
// and the lookup's equalities. The first such key's columns are kept as
// c.uniqueKey, the conflict target of an upsert.
func (p *Plugin) checkUnique(c *call, keys []*schema.Field) error {
	c.uniqueKey = nil
	// No allocation on the common path: a key the model declares unique.
	has := func(col string) bool {
		for _, f := range keys {
			if f.DBName == col {
				return true
			}
		}
		for _, e := range c.eqs {
			if e.field.DBName == col {
				return true
			}
		}
		return false
	}
	covered := func(columns []string) bool {
		if len(columns) == 0 {
			return false
		}
		for _, col := range columns {
			if !has(col) {
				return false
			}
		}
		return true
	}
	s := c.schema
	if covered(s.PrimaryFieldDBNames) {
		c.uniqueKey = s.PrimaryFieldDBNames
		return nil
	}
	for _, f := range s.Fields {
		if f.Unique && has(f.DBName) {
			c.uniqueKey = []string{f.DBName}
			return nil
		}
	}
	declared := indexesOf(s)
	for _, columns := range declared.unique {
		if covered(columns) {
			c.uniqueKey = columns
			return nil
		}
	}
	var names []string
	for _, f := range keys {
		if !slices.Contains(names, f.DBName) {
			names = append(names, f.DBName)
		}
	}
	for _, e := range c.eqs {
		if !slices.Contains(names, e.field.DBName) {
			names = append(names, e.field.DBName)
		}
	}
	table := c.catalogTable
	notUnique := func() error {
		return fmt.Errorf("%w: %s (%s)", ErrKeyNotUnique, table, strings.Join(names, ", "))
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: %s: the lookup has no plain column equality (column = value) for a unique index to cover; "+
			"an expression such as LOWER(email) = ? cannot be checked (index the expression and turn the guard off with WithUniqueGuard(false), or look up a column)",
			ErrKeyNotUnique, table)
	}
	if c.tx.DryRun {
		return nil // the catalog would have to be read: trust the caller
	}

	slices.Sort(names)
	// Per database (a plugin may serve several, and dbresolver may choose
	// one by name), table and column set. Only a covered key is cached: an
	// index created later then counts without a restart.
	cacheKey := uniqueKey{c.tx.Dialector, resolverName(c.tx), table, strings.Join(names, "\x00")}
	if key, hit := p.uniqueCache.Load(cacheKey); hit {
		c.uniqueKey = key.([]string)
		return nil
	}
	// On the primary: an index created a moment ago may not have reached a
	// replica yet.
	keySets, err := c.d.UniqueKeys(c.catalogDB(), table)
	if err != nil {
		return fmt.Errorf("safefind: read the unique indexes of %s: %w", table, err)
	}
	i := slices.IndexFunc(keySets, covered)
	if i < 0 {
		return notUnique()
	}
	c.uniqueKey = keySets[i]
	p.uniqueCache.Store(cacheKey, keySets[i])
	return nil
}

// uniqueKey is the catalog cache's key.
type uniqueKey struct {
	db                       gorm.Dialector
	resolver, table, columns string
}

// declaredIndexes are the indexes declared on a model.
type declaredIndexes struct {
	unique [][]string // the columns of each unique, non-partial index
}

// indexesOf returns the indexes declared on the model. GORM's ParseIndexes
// writes to the schema's fields, so it is called once per schema, under a
// lock.
func indexesOf(s *schema.Schema) declaredIndexes {
	if v, ok := indexCache.Load(s); ok {
		return v.(declaredIndexes)
	}
	indexMu.Lock()
	defer indexMu.Unlock()
	if v, ok := indexCache.Load(s); ok {
		return v.(declaredIndexes)
	}
	var out declaredIndexes
	for _, idx := range s.ParseIndexes() {
		// A partial index does not make the key unique, nor does one on an
		// expression (lower(name)) make the column unique.
		if idx.Where != "" || !strings.EqualFold(idx.Class, "UNIQUE") ||
			slices.ContainsFunc(idx.Fields, func(o schema.IndexOption) bool { return o.Expression != "" }) {
			continue
		}
		columns := make([]string, len(idx.Fields))
		for i, f := range idx.Fields {
			columns[i] = f.DBName
		}
		out.unique = append(out.unique, columns)
	}
	indexCache.Store(s, out)
	return out
}

var (
	indexMu    sync.Mutex
	indexCache sync.Map // *schema.Schema -> declaredIndexes
)

// otherUniqueKey reports whether the lookup's table has, in the catalog, a
// unique key other than its primary key and the lookup's unique key: an
// INSERT ... ON DUPLICATE KEY UPDATE could then meet a row by that key. The
// catalog is read once per database and table: a key created later is not
// seen, and the upsert's guard keeps such a row unchanged (upsert.go).
func (p *Plugin) otherUniqueKey(c *call) (bool, error) {
	if c.tx.DryRun {
		return false, nil // the catalog would have to be read: trust the caller, cache nothing
	}
	cacheKey := uniqueKey{c.tx.Dialector, resolverName(c.tx), c.catalogTable, ""}
	sets, ok := p.tableKeys.Load(cacheKey)
	if !ok {
		read, err := c.d.UniqueKeys(c.catalogDB(), c.catalogTable)
		if err != nil {
			return false, fmt.Errorf("safefind: read the unique indexes of %s: %w", c.catalogTable, err)
		}
		sets, _ = p.tableKeys.LoadOrStore(cacheKey, read)
	}
	same := func(a, b []string) bool {
		return len(a) == len(b) && !slices.ContainsFunc(a, func(col string) bool { return !slices.Contains(b, col) })
	}
	for _, set := range sets.([][]string) {
		if !same(set, c.schema.PrimaryFieldDBNames) && !same(set, c.uniqueKey) {
			return true, nil
		}
	}
	return false, nil
}

// upsertTable reports whether the lookup's table can take the upsert of
// one statement (dialect.UpsertTable), read from the catalog once per
// database and table.
func (p *Plugin) upsertTable(c *call) (bool, error) {
	if c.tx.DryRun {
		return true, nil // the catalog would have to be read: trust the caller, cache nothing
	}
	cacheKey := uniqueKey{c.tx.Dialector, resolverName(c.tx), c.catalogTable, ""}
	if ok, hit := p.upsertable.Load(cacheKey); hit {
		return ok.(bool), nil
	}
	ok, err := c.d.UpsertTable(c.catalogDB(), c.catalogTable)
	if err != nil {
		return false, fmt.Errorf("safefind: read the kind of %s: %w", c.catalogTable, err)
	}
	p.upsertable.Store(cacheKey, ok)
	return ok, nil
}
