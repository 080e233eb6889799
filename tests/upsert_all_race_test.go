package tests

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Concurrent UpsertAll calls on overlapping keys, each given in an order of
// its own, in transactions: no deadlock, no error, one row per key, every
// element holding its stored row, and created true for exactly one element
// per new key across all callers. Half the rounds upsert fresh keys, half
// keys that exist (seeded before the round).
func TestUpsertAllConcurrent(t *testing.T) {
	const (
		workers = 6
		keys    = 200
		rounds  = 20
	)
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		var deadlocks, failures atomic.Int64
		var firstErr sync.Once
		for round := range rounds {
			name := func(k int) string { return fmt.Sprintf("r%02d-a%04d", round, k) }
			seeded := map[string]bool{}
			if round%2 == 1 {
				var seed []Alias
				for k := 0; k < keys+(workers-1)*keys/3; k += 3 {
					seed = append(seed, Alias{AliasName: name(k), ModelID: 99})
					seeded[name(k)] = true
				}
				require.NoError(t, e.other.CreateInBatches(&seed, 200).Error)
			}
			results := make([][]Alias, workers)
			flags := make([][]bool, workers)
			release(workers, func(w int) {
				rows := make([]Alias, keys)
				for i := range rows {
					k := w*keys/3 + i // overlapping ranges
					rows[i] = Alias{AliasName: name(k), ModelID: uint(w + 1), IsActive: k%2 == 0}
				}
				rand.New(rand.NewPCG(uint64(round), uint64(w))).Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
				err := e.db.Transaction(func(tx *gorm.DB) error {
					if err := fastDeadlocks(e, tx); err != nil {
						return err
					}
					created, err := safefind.UpsertAll(tx, &rows, []string{"alias_name"}, "model_id", "is_active")
					flags[w] = created
					return err
				})
				switch {
				case err == nil:
					results[w] = rows
				case isDeadlock(err):
					deadlocks.Add(1)
					t.Errorf("round %d, worker %d: %v", round, w, err)
				default:
					failures.Add(1)
					firstErr.Do(func() { t.Errorf("worker %d: %v", w, err) })
				}
			})
			stored := storedAliases(t, e.other)
			createdBy := map[string]int{}
			for w, rows := range results {
				for i, row := range rows {
					s, ok := stored[row.AliasName]
					require.True(t, ok, "%s stored", row.AliasName)
					require.Equal(t, s.ID, row.ID, "worker %d element %d holds its stored row's id", w, i)
					if flags[w][i] {
						createdBy[row.AliasName]++
					}
				}
			}
			want := 0
			for k := range keys + (workers-1)*keys/3 {
				if !seeded[name(k)] {
					want++
					require.Equal(t, 1, createdBy[name(k)], "%s created by exactly one caller", name(k))
				} else {
					require.Zero(t, createdBy[name(k)], "%s existed", name(k))
				}
			}
			require.Len(t, createdBy, want)
		}
		assert.Zero(t, deadlocks.Load(), "deadlocks")
		assert.Zero(t, failures.Load(), "failures")
		var dup int64
		require.NoError(t, e.other.Raw("SELECT COUNT(*) FROM (SELECT alias_name FROM aliases GROUP BY alias_name HAVING COUNT(*) > 1) d").Scan(&dup).Error)
		assert.Zero(t, dup, "one row per key")
		assert.EqualValues(t, rounds*(keys+(workers-1)*keys/3), e.count(t, &Alias{}))
	})
}

// The control: GORM's own upsert of the same unsorted rows deadlocks.
func TestUpsertAllControlDeadlocks(t *testing.T) {
	const (
		workers = 6
		keys    = 200
		rounds  = 40
	)
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite has one writer at a time: no row locks to deadlock on")
		}
		e.reset(t, &Alias{})
		var deadlocks atomic.Int64
		for round := 0; round < rounds && deadlocks.Load() == 0; round++ {
			release(workers, func(w int) {
				rows := make([]Alias, keys)
				for i := range rows {
					rows[i] = Alias{AliasName: fmt.Sprintf("c%02d-a%04d", round, w*keys/3+i), ModelID: uint(w + 1)}
				}
				rand.New(rand.NewPCG(uint64(round), uint64(w))).Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
				err := e.db.Transaction(func(tx *gorm.DB) error {
					if err := fastDeadlocks(e, tx); err != nil {
						return err
					}
					return tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "alias_name"}}, DoUpdates: clause.AssignmentColumns([]string{"model_id"})}).Create(&rows).Error
				})
				if isDeadlock(err) {
					deadlocks.Add(1)
				}
			})
		}
		assert.Positive(t, deadlocks.Load(), "unsorted upserts of overlapping keys deadlock")
	})
}

// Alias reassignment, as teams do it: concurrent transactions each upsert an
// overlapping alias set onto their own model and delete that model's
// aliases not in the set. Afterwards every alias exists once, belongs to one
// model, and no call failed. The upserts lock their rows in key order and
// cannot deadlock on each other; the DELETE that follows locks the rows of
// the model's old aliases, which another transaction may have just
// reassigned, and that can deadlock whatever the upsert does (InnoDB, which
// locks what its DELETE scans): RetryTransaction runs it again, as a team
// would, and the test counts the retries.
func TestUpsertAllAliasReassignment(t *testing.T) {
	const (
		models  = 6
		aliases = 60
		rounds  = 20
	)
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		var retries, upsertDeadlocks atomic.Int64
		defer func() {
			t.Logf("%d transactions retried, %d after a deadlock in UpsertAll", retries.Load(), upsertDeadlocks.Load())
		}()
		for round := range rounds {
			sets := make([][]string, models)
			release(models, func(m int) {
				r := rand.New(rand.NewPCG(uint64(round), uint64(m)))
				var names []string
				for a := range aliases {
					if r.IntN(3) == 0 {
						names = append(names, fmt.Sprintf("alias%03d", a))
					}
				}
				sets[m] = names
				model := uint(m + 1)
				rows := make([]Alias, len(names))
				for i, n := range names {
					rows[i] = Alias{AliasName: n, ModelID: model, IsActive: true}
				}
				attempts := 0
				err := safefind.RetryTransaction(e.db, func(tx *gorm.DB) error {
					attempts++
					if err := fastDeadlocks(e, tx); err != nil {
						return err
					}
					rows := append([]Alias(nil), rows...)
					if _, err := safefind.UpsertAll(tx, &rows, []string{"alias_name"}, "model_id", "is_active"); err != nil {
						if isDeadlock(err) {
							upsertDeadlocks.Add(1)
						}
						return err
					}
					q := tx.Where("model_id = ?", model)
					if len(names) > 0 {
						q = q.Where("alias_name NOT IN ?", names)
					}
					return q.Delete(&Alias{}).Error
				})
				assert.NoError(t, err, "model %d, round %d", model, round)
				retries.Add(int64(attempts - 1))
			})
			stored := storedAliases(t, e.other)
			var n int64
			require.NoError(t, e.other.Model(&Alias{}).Count(&n).Error)
			require.EqualValues(t, len(stored), n, "every alias once")
			for name, a := range stored {
				require.Contains(t, sets[a.ModelID-1], name, "%s belongs to model %d, which upserted it", name, a.ModelID)
			}
		}
	})
}

// fastDeadlocks makes PostgreSQL detect the deadlocks of transaction tx in
// 50 ms instead of 1 s.
func fastDeadlocks(e *env, tx *gorm.DB) error {
	if e.name != "postgres" {
		return nil
	}
	return tx.Exec("SET LOCAL deadlock_timeout = '50ms'").Error
}
