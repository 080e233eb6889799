package safefind

import (
	"fmt"
	"reflect"
)

// The keys a batch cannot settle by its statements, one at a time, by the
// database's own comparison of keys (a case-insensitive collation, a time
// cut to the column's precision).

// findOneByOne reads the rows of groups one at a time, by the database's
// own comparison of keys, and returns the groups it did not find. A row read
// is this call's own when its primary key is among the rows this call
// inserted.
func (b *batch) findOneByOne(groups []*group) (missing []*group, err error) {
	for _, g := range groups {
		dest, _, found, err := b.readOne(g)
		if err != nil {
			return nil, err
		}
		if !found {
			missing = append(missing, g)
			continue
		}
		g.row, g.created = dest.Elem(), b.ours[b.pkID(dest.Elem())]
		if !g.created {
			b.c.record(EventFound, 1)
		}
	}
	return missing, nil
}

// readOne reads the row of g alone, by the database's own comparison of
// keys (the latest read), into dest, a new element holding g's first
// element before the read; c is the single-row call that read it.
func (b *batch) readOne(g *group) (dest reflect.Value, c *call, found bool, err error) {
	dest = reflect.New(b.typ)
	dest.Elem().Set(b.elem(g.idx[0]))
	conds := make(map[string]any, len(b.keys))
	for k, f := range b.keys {
		conds[f.DBName] = g.raw[k]
	}
	if c, err = begin(b.c.tx, dest.Interface(), []any{conds}, b.c.op); err != nil {
		return dest, c, false, err
	}
	found, err = c.read(true)
	return dest, c, found, err
}

// oneByOne settles the groups one at a time, by the database's own
// comparison of keys: a read, then CreateOrFind's path. A row read is this
// call's own when its primary key is among the rows this call inserted, or
// when inserted says every group's row was.
func (b *batch) oneByOne(groups []*group, inserted bool) error {
	for _, g := range groups {
		dest, c, found, err := b.readOne(g)
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
			if created, err = c.writeOne(c.planSkipping()); err != nil {
				return err
			}
		}
		g.row, g.created = dest.Elem(), created
	}
	return nil
}
