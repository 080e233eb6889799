package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/safefind/safefind/tests/internal/race"
	"gorm.io/gorm"
)

// A workload is a mix of keys.
type workload struct {
	name       string
	hits       float64 // the share of calls on existing keys
	contention bool    // goroutines released together on each new key
}

var workloads = []workload{
	{"hits", 1, false},
	{"misses", 0, false},
	{"90% hits", 0.9, false},
	{"contention", 0, true},
}

func txLabel(inTx bool) string {
	if inTx {
		return "tx"
	}
	return "bare"
}

// sequential makes calls one after the other, in caller transactions of
// b.txops calls when inTx, b.txops calls at a time for as long as more
// (given the calls made) says. It returns the calls made.
func (b *bench) sequential(m *meter, w workload, inTx bool, im impl, more func(calls int) bool) int {
	ctx, calls, fail := m.ctx, &m.calls, m.fail
	var lat []time.Duration
	call := func(db *gorm.DB, key string) error {
		start := time.Now()
		id, err := im.fn(ctx, db, inTx, key)
		lat = append(lat, time.Since(start))
		calls.Add(1)
		if err == nil && id == 0 {
			err = fmt.Errorf("no id for %s", key)
		}
		return err
	}
	made := 0
	keys := make([]string, b.txops)
	for more(made) {
		chunk := keys[:b.txops]
		if b.budget.calls > 0 {
			chunk = keys[:min(b.txops, b.budget.calls-made)]
		}
		for i := range chunk {
			if rand.Float64() < w.hits {
				chunk[i] = b.existing[rand.IntN(len(b.existing))]
			} else {
				chunk[i] = b.newKey()
			}
		}
		made += len(chunk)
		if !inTx {
			for _, k := range chunk {
				if err := call(b.db, k); err != nil {
					fail(err)
				}
			}
			continue
		}
		tx := b.db.WithContext(ctx).Begin()
		if tx.Error != nil {
			fail(tx.Error)
			continue
		}
		failed := false
		for _, k := range chunk {
			if err := call(tx, k); err != nil {
				fail(err)
				failed = true
			}
		}
		if failed {
			tx.Rollback()
		} else if err := tx.Commit().Error; err != nil {
			fail(err)
		}
	}
	m.observe(lat)
	return made
}

// contended releases b.g goroutines together on each new key, for as long
// as more (given the calls made) says; every caller must get the same id.
// It returns the calls made.
func (b *bench) contended(m *meter, inTx bool, im impl, more func(calls int) bool) int {
	ctx, calls, fail := m.ctx, &m.calls, m.fail
	made := 0
	// Rounds of b.g calls: under a budget of calls, as many as fit in it
	// (more(made+b.g-1) is made+b.g ≤ calls), and at least one.
	for made == 0 || more(made+b.g-1) {
		made += b.g
		key := b.newKey()
		ids := make([]uint, b.g)
		lat := make([]time.Duration, b.g)
		race.Release(b.g, func(i int) {
			start := time.Now()
			var err error
			if inTx {
				err = b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					var err error
					ids[i], err = im.fn(ctx, tx, true, key)
					return err
				})
			} else {
				ids[i], err = im.fn(ctx, b.db, false, key)
			}
			lat[i] = time.Since(start)
			calls.Add(1)
			if err != nil {
				ids[i] = 0
				fail(err)
			}
		})
		var want uint
		for _, id := range ids {
			if id != 0 && want == 0 {
				want = id
			}
			if id != 0 && id != want {
				fail(fmt.Errorf("%s: ids %d and %d", key, want, id))
			}
		}
		m.observe(lat)
	}
	return made
}
