package tests

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Goroutines released together on one fresh key, many rounds, bare and in
// transactions: no errors, one row per key, one id for everyone, exactly one
// created=true. Then the database itself is checked.
func TestConcurrentSameKey(t *testing.T) {
	const (
		workers = 12
		rounds  = 25
	)
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			for _, inTx := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/tx=%v", o.name, inTx), func(t *testing.T) {
					e.reset(t, &Tag{})
					before := e.plugin.Stats()
					for round := range rounds {
						key := fmt.Sprintf("key-%d", round)
						ids := make([]uint, workers)
						errs := make([]error, workers)
						var createdN atomic.Int64
						release(workers, func(i int) {
							var tag Tag
							call := func(tx *gorm.DB) error {
								created, err := o.fn(tx, &tag, Tag{Name: key})
								if created {
									createdN.Add(1)
								}
								return err
							}
							if inTx {
								errs[i] = e.db.Transaction(call)
							} else {
								errs[i] = call(e.db)
							}
							ids[i] = tag.ID
						})
						for i, err := range errs {
							require.NoError(t, err, "round %d worker %d", round, i)
						}
						require.EqualValues(t, 1, createdN.Load(), "round %d: exactly one caller created the row", round)
						var stored Tag
						require.NoError(t, e.other.Where("name = ?", key).First(&stored).Error)
						for i, id := range ids {
							require.Equal(t, stored.ID, id, "round %d worker %d got another row", round, i)
						}
					}
					assert.EqualValues(t, rounds, e.count(t, &Tag{}), "one row per key")
					after := e.plugin.Stats()
					assert.EqualValues(t, rounds, after.Created-before.Created)
					assert.EqualValues(t, rounds*(workers-1), after.Found-before.Found)
					if o.name == "CreateOrFind" || !e.abortsTx() || !inTx {
						assert.EqualValues(t, 0, after.Savepoints-before.Savepoints, "no savepoint on this path")
					}
					t.Logf("lost races: %d of %d calls", after.Conflicts-before.Conflicts, rounds*workers)
				})
			}
		}
	})
}

// abortsTx reports whether a failed statement aborts the transaction.
func (e *env) abortsTx() bool { return e.name == "postgres" }

// A winner commits between the caller's SELECT and its INSERT. The caller
// gets the winner's row, created=false, within its statement and savepoint
// budget, and its transaction stays usable.
func TestLostRace(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			for _, inTx := range []bool{false, true} {
				if inTx && e.name == "sqlite" {
					// A SQLite transaction holds the write lock from BEGIN
					// (_txlock=immediate): no other writer can win meanwhile.
					continue
				}
				t.Run(fmt.Sprintf("%s/tx=%v", o.name, inTx), func(t *testing.T) {
					e.reset(t, &Tag{})
					var winner Tag
					ctx := withInject(context.Background(), func() {
						winner = Tag{Name: "race", Note: "winner"}
						require.NoError(t, e.other.Create(&winner).Error)
					})
					r := &Recorder{}
					ctx = withRecorder(ctx, r)
					before := e.plugin.Stats()
					var got Tag
					var created bool
					var err error
					call := func(db *gorm.DB) error {
						created, err = o.fn(db.WithContext(ctx), &got, Tag{Name: "race"})
						return err
					}
					if inTx {
						err = e.db.Transaction(func(tx *gorm.DB) error {
							if err := call(tx); err != nil {
								return err
							}
							// The transaction is still usable: it writes and commits.
							return tx.Create(&Tag{Name: "after"}).Error
						})
					} else {
						err = call(e.db)
					}
					require.NoError(t, err)
					assert.False(t, created)
					assert.Equal(t, winner, got, "the winner's row")
					if inTx {
						assert.EqualValues(t, 1, e.count(t, &Tag{}, "name = ?", "after"), "the caller's transaction committed its own write")
					}
					after := e.plugin.Stats()
					assert.EqualValues(t, 1, after.Conflicts-before.Conflicts)
					stmts := r.Statements()
					switch {
					case o.name == "FindOrCreate" && inTx && e.abortsTx():
						// SELECT, SAVEPOINT, INSERT, ROLLBACK TO + RELEASE, SELECT
						assert.Equal(t, 1, r.Savepoints(), "%q", stmts)
						assert.Len(t, stmts, 5, "%q", stmts)
					case o.name == "FindOrCreate":
						assert.Equal(t, 0, r.Savepoints(), "%q", stmts)
						assert.Len(t, stmts, 3, "SELECT, INSERT, SELECT: %q", stmts)
					case e.name == "postgres":
						assert.Equal(t, 0, r.Savepoints(), "%q", stmts)
						assert.Len(t, stmts, 1, "WITH ins AS (INSERT ...) SELECT: %q", stmts)
					default:
						assert.Equal(t, 0, r.Savepoints(), "%q", stmts)
						assert.Len(t, stmts, 2, "INSERT, SELECT: %q", stmts)
					}
				})
			}
		}
	})
}

// Callers released together on ten fresh keys, ten per key, each assigning
// its own note: bare and inside RetryTransaction, both calls, on a model
// with hooks and one without (CreateOrFind's one-statement upsert on
// PostgreSQL). No errors; one row per key; exactly one caller per key
// created it; every caller's dest holds the key's one id and its own
// assignment (the row as that caller's UPDATE left it); the stored row holds
// one of the assignments.
func TestConcurrentAssign(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		t.Run("hooks", func(t *testing.T) { concurrentAssign[Person](t, e) })
		t.Run("no hooks", func(t *testing.T) { concurrentAssign[PlainPerson](t, e) })
	})
}

func concurrentAssign[T Person | PlainPerson](t *testing.T, e *env) {
	const (
		keys    = 10
		perKey  = 10
		workers = keys * perKey
	)
	for _, o := range ops {
		for _, inTx := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/RetryTransaction=%v", o.name, inTx), func(t *testing.T) {
				e.reset(t, new(T))
				dests := make([]T, workers)
				errs := make([]error, workers)
				created := make([]bool, workers)
				release(workers, func(i int) {
					key, note := fmt.Sprintf("key-%d", i%keys), fmt.Sprintf("worker-%d", i)
					call := func(tx *gorm.DB) (err error) {
						var zero T
						dests[i] = zero
						created[i], err = o.fn(tx.Where(&Person{Name: key}).Assign(map[string]any{"note": note}), &dests[i])
						return err
					}
					if inTx {
						errs[i] = safefind.RetryTransaction(e.db, call)
					} else {
						errs[i] = call(e.db)
					}
				})
				createdPerKey := map[string]int{}
				for i := range workers {
					require.NoError(t, errs[i], "worker %d", i)
					key := fmt.Sprintf("key-%d", i%keys)
					var stored T
					require.NoError(t, e.other.Where("name = ?", key).First(&stored).Error)
					assert.Equal(t, Person(stored).ID, Person(dests[i]).ID, "worker %d holds the key's row", i)
					assert.Equal(t, fmt.Sprintf("worker-%d", i), Person(dests[i]).Note, "worker %d holds its own assignment", i)
					assert.Regexp(t, `^worker-\d+$`, Person(stored).Note)
					if created[i] {
						createdPerKey[key]++
					}
				}
				assert.EqualValues(t, keys, e.count(t, new(T)), "one row per key")
				for k := range keys {
					assert.Equal(t, 1, createdPerKey[fmt.Sprintf("key-%d", k)], "key-%d created exactly once", k)
				}
			})
		}
	}
}
