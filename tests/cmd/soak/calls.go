package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/safefind/safefind"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The calls the workers make, and the checks of what each returns.

// kind is one of the five calls.
type kind int

const (
	findOrCreate kind = iota
	createOrFind
	findOrCreateAll
	createOrFindAll
	upsertAll
	nKinds

	// atCommit is no call: a transaction's COMMIT failed.
	atCommit = nKinds
)

var kindNames = [nKinds + 1]string{"FindOrCreate", "CreateOrFind", "FindOrCreateAll", "CreateOrFindAll", "UpsertAll", "COMMIT"}

// call is one planned call, run once bare or once per transaction attempt.
type call struct {
	kind  kind
	keys  []string // one for the single-row calls
	where bool     // single-row: the key in a Where chain, not a struct condition
	ptrs  bool     // batch: []*Item rather than []Item
	cols  bool     // UpsertAll: name the update column rather than take the default (the same: payload)
	keep  bool     // UpsertAll: write keptPayload, which leaves a row that has it unchanged, not the worker's
}

// keptPayload is the payload UpsertAll writes but for a fraction
// -upsert-changes of its calls, which write the worker's: a row that
// already has it is left as it is (no new row version on PostgreSQL), as
// most upserts of a sync job would.
const keptPayload = "kept"

// batch reports whether the call is one of the batch calls.
func (c call) batch() bool { return c.kind != findOrCreate && c.kind != createOrFind }

func (c call) String() string {
	if !c.batch() {
		return fmt.Sprintf("%s(%s)", kindNames[c.kind], c.keys[0])
	}
	if slices.IsSorted(c.keys) && len(slices.Compact(slices.Clone(c.keys))) == len(c.keys) {
		return fmt.Sprintf("%s(%d keys: %s…%s)", kindNames[c.kind], len(c.keys), c.keys[0], c.keys[len(c.keys)-1])
	}
	return fmt.Sprintf("%s(%d keys in random order: %s…)", kindNames[c.kind], len(c.keys), c.keys[0])
}

// worker runs calls until the deadline: a fraction -bare (4 in 10) bare,
// the others inside RetryTransaction.
func (s *soak) worker(ctx context.Context, w int, deadline time.Time) {
	r := rand.New(rand.NewPCG(s.cfg.seed, uint64(w)))
	payload := fmt.Sprintf("worker %d", w)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.Float64() < s.cfg.bare {
			c := s.plan(r, s.keys)
			s.bare.Add(1)
			var retries int
			created, err := s.do(s.db.WithContext(context.WithValue(ctx, retriesKey{}, &retries)), c, payload, false)
			if err != nil {
				// It may have created rows before it failed.
				s.margin.Add(int64(len(c.keys)))
				if safefind.IsRetryable(err) {
					s.retryCause(err, true)
				}
				st := bareSingle
				if c.batch() {
					st = bareBatch
				}
				s.classify(fmt.Sprintf("bare %s (%d statements retried)", c, retries), st, c.kind, err)
				continue
			}
			s.kept.Add(int64(created))
			continue
		}
		s.transaction(ctx, r, payload)
	}
}

// retriesKey is the context key of a bare call's count of the statements
// the plugin retried (EventRetry).
type retriesKey struct{}

// observe counts a bare call's retried statements, on its goroutine.
func observe(ctx context.Context, e safefind.Event) {
	if n, ok := ctx.Value(retriesKey{}).(*int); ok && e.Kind == safefind.EventRetry {
		*n += max(e.Rows, 1)
	}
}

// plan picks a call and its keys among keys: single keys uniformly;
// batches either a sorted run of consecutive keys or random keys in random
// order, duplicates included.
func (s *soak) plan(r *rand.Rand, keys []string) call {
	c := call{kind: s.cfg.kinds[r.IntN(len(s.cfg.kinds))], where: r.IntN(2) == 0, ptrs: r.IntN(2) == 0, cols: r.IntN(2) == 0,
		keep: r.Float64() >= s.cfg.upsertChanges}
	if !c.batch() {
		c.keys = []string{keys[r.IntN(len(keys))]}
		return c
	}
	n := s.cfg.batch
	if r.IntN(2) == 0 {
		n = 1 + r.IntN(s.cfg.batch)
	}
	if r.IntN(2) == 0 {
		n = min(n, len(keys))
		first := r.IntN(len(keys) - n + 1)
		c.keys = keys[first : first+n]
		return c
	}
	c.keys = make([]string, n)
	for i := range c.keys {
		c.keys[i] = keys[r.IntN(len(keys))]
	}
	return c
}

// transaction runs 1 to -txcalls calls in one RetryTransaction, under the
// database's default isolation or, on PostgreSQL and MySQL/MariaDB, at times
// under REPEATABLE READ (and READ COMMITTED on MySQL/MariaDB, whose default
// is REPEATABLE READ).
//
// A transaction of several calls is ordered, except for a fraction
// -unordered of them: call i takes its keys from the i-th of as many
// consecutive slices of the key space, so that its rows, which safefind
// inserts in key order within a call, are locked in key order across the
// whole transaction. Unordered transactions deadlock, as any application's
// would, and PostgreSQL's deadlock detector takes deadlock_timeout (1s) to
// break each cycle.
func (s *soak) transaction(ctx context.Context, r *rand.Rand, payload string) {
	plan := make([]call, 1+r.IntN(s.cfg.txCalls))
	ordered := len(plan) == 1 || r.Float64() >= s.cfg.unordered
	for i := range plan {
		if ordered {
			plan[i] = s.plan(r, s.keys[i*len(s.keys)/len(plan):(i+1)*len(s.keys)/len(plan)])
		} else {
			plan[i] = s.plan(r, s.keys)
		}
	}
	opts := []safefind.RetryOption{safefind.RetryAttempts(s.cfg.attempts)}
	iso := sql.LevelDefault
	if s.isolated {
		switch r.IntN(3) {
		case 1:
			iso = sql.LevelRepeatableRead
		case 2:
			if s.cfg.db == "mysql" {
				iso = sql.LevelReadCommitted
			}
		}
		if iso != sql.LevelDefault {
			opts = append(opts, safefind.RetryTxOptions(&sql.TxOptions{Isolation: iso}))
		}
	}
	// Each attempt's failure: the call that failed and its error, or
	// atCommit and nil when the function returned nil.
	type failure struct {
		kind kind
		err  error
	}
	var (
		attempts []failure
		created  int // the last attempt's created flags
	)
	err := safefind.RetryTransaction(s.db.WithContext(ctx), func(tx *gorm.DB) error {
		attempts = append(attempts, failure{kind: atCommit})
		created = 0
		for _, c := range plan {
			n, err := s.do(tx, c, payload, true)
			if err != nil {
				if safefind.IsRetryable(err) {
					s.retryCause(err, ordered)
				}
				attempts[len(attempts)-1] = failure{c.kind, err}
				return err
			}
			created += n
		}
		return nil
	}, opts...)
	runs := len(attempts)
	s.runs.Add(int64(runs))
	if runs > 1 {
		s.retries.Add(int64(runs - 1))
	}
	for _, f := range attempts[:max(runs-1, 0)] {
		s.countLock("transaction attempt", txRetried, f.kind, f.err)
	}
	if err == nil {
		s.kept.Add(int64(created))
		s.committed.Add(1)
		if iso == sql.LevelRepeatableRead {
			s.committedRR.Add(1)
		}
		return
	}
	s.failedTx.Add(1)
	where := fmt.Sprintf("transaction (%s, %d calls, ordered %t, first %s)", iso, len(plan), ordered, plan[0])
	var re *safefind.RetryError
	if !errors.As(err, &re) {
		s.nonRetryable.Add(1)
		s.note(fmt.Sprintf("%s: RetryTransaction returned %T, not *RetryError: %v", where, err, err))
		return
	}
	if re.Attempts != runs {
		s.mismatch.Add(1)
		s.note(fmt.Sprintf("%s: RetryError.Attempts = %d, but the function ran %d times", where, re.Attempts, runs))
	}
	last := failure{kind: atCommit}
	if runs > 0 {
		last = attempts[runs-1]
	}
	s.classify(where, txEscaped, last.kind, err)
}

// do runs one call on tx and checks its result; inTx says tx is a
// transaction's. It returns how many rows the call says it created.
func (s *soak) do(tx *gorm.DB, c call, payload string, inTx bool) (int, error) {
	s.calls[c.kind].Add(1)
	if c.kind == upsertAll && c.keep {
		payload = keptPayload
	}
	if !c.batch() {
		fn := safefind.FindOrCreate
		if c.kind == createOrFind {
			fn = safefind.CreateOrFind
		}
		k := c.keys[0]
		item := Item{Payload: payload}
		var (
			created bool
			err     error
		)
		if c.where {
			created, err = fn(tx.Where("item_key = ?", k), &item)
		} else {
			created, err = fn(tx, &item, Item{ItemKey: k})
		}
		if err != nil {
			return 0, err
		}
		if item.ItemKey != k || item.ID == 0 {
			s.wrong(fmt.Sprintf("%s returned id %d key %q", c, item.ID, item.ItemKey))
		}
		if created {
			s.created.Add(1)
			return 1, nil
		}
		return 0, nil
	}

	fn := func(tx *gorm.DB, rows any) ([]bool, error) {
		switch c.kind {
		case findOrCreateAll:
			return safefind.FindOrCreateAll(tx, rows, "item_key")
		case createOrFindAll:
			return safefind.CreateOrFindAll(tx, rows, "item_key")
		}
		if c.cols {
			return safefind.UpsertAll(tx, rows, []string{"item_key"}, "Payload")
		}
		return safefind.UpsertAll(tx, rows, []string{"item_key"})
	}
	s.batchRows.Add(int64(len(c.keys)))
	got := make([]Item, len(c.keys))
	var (
		created []bool
		err     error
	)
	if c.ptrs {
		rows := make([]*Item, len(c.keys))
		for i, k := range c.keys {
			rows[i] = &Item{ItemKey: k, Payload: payload}
		}
		if created, err = fn(tx, &rows); err != nil {
			return 0, err
		}
		for i, row := range rows {
			got[i] = *row
		}
	} else {
		rows := make([]Item, len(c.keys))
		for i, k := range c.keys {
			rows[i] = Item{ItemKey: k, Payload: payload}
		}
		if created, err = fn(tx, &rows); err != nil {
			return 0, err
		}
		copy(got, rows)
	}
	n := s.checkBatch(c, got, created)
	if c.kind == upsertAll && inTx {
		if err := s.checkUpsert(tx, c, got, payload); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// checkBatch checks a batch's rows: each has its key and an id, elements of
// one key share one row, and only the first of them can be created. It
// returns how many are created.
func (s *soak) checkBatch(c call, got []Item, created []bool) int {
	if len(created) != len(got) {
		s.wrong(fmt.Sprintf("%s returned %d created flags for %d rows", c, len(created), len(got)))
		return 0
	}
	n := 0
	first := make(map[string]int, len(got))
	for i, row := range got {
		k := c.keys[i]
		if row.ItemKey != k || row.ID == 0 {
			s.wrong(fmt.Sprintf("%s: element %d (key %q) got id %d key %q", c, i, k, row.ID, row.ItemKey))
		}
		if j, seen := first[k]; seen {
			if got[j].ID != row.ID || created[i] {
				s.wrong(fmt.Sprintf("%s: key %q: element %d got id %d (created %t), element %d id %d", c, k, j, got[j].ID, created[j], i, row.ID))
			}
		} else {
			first[k] = i
		}
		if created[i] {
			n++
		}
	}
	s.created.Add(int64(n))
	return n
}

// checkUpsert checks UpsertAll's rows inside a transaction, which holds
// them locked (inserted, updated, or met by the conflict clause) until it
// ends: a locking read finds each key once, with the id its elements got
// and the payload they wrote. The read locks (FOR UPDATE) so that a
// MySQL/MariaDB REPEATABLE READ snapshot cannot hide a row, through the
// key's index: a table scan, which MariaDB picks at times on a small
// table, would lock every row and deadlock everyone. SQLite's transaction
// holds the whole database.
func (s *soak) checkUpsert(tx *gorm.DB, c call, got []Item, payload string) error {
	q := tx.Where("item_key IN ?", c.keys)
	switch s.cfg.db {
	case "mysql":
		q = q.Table("soak_items FORCE INDEX (idx_soak_items_item_key)").Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	case "postgres":
		q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	}
	var rows []Item
	if err := q.Find(&rows).Error; err != nil {
		return err
	}
	stored := make(map[string]Item, len(rows))
	for _, row := range rows {
		if _, twice := stored[row.ItemKey]; twice {
			s.wrong(fmt.Sprintf("%s: key %q read twice", c, row.ItemKey))
		}
		stored[row.ItemKey] = row
	}
	for i, row := range got {
		st, ok := stored[c.keys[i]]
		switch {
		case !ok:
			s.wrong(fmt.Sprintf("%s: element %d (key %q, id %d): no row in its transaction", c, i, c.keys[i], row.ID))
		case st.ID != row.ID || st.Payload != payload || row.Payload != payload:
			s.wrong(fmt.Sprintf("%s: element %d (key %q) holds id %d payload %q; stored id %d payload %q; written %q", c, i, c.keys[i], row.ID, row.Payload, st.ID, st.Payload, payload))
		}
	}
	return nil
}
