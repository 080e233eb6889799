package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/safefind/safefind"
)

// The goroutines beside the workers: the deleter and the checker of keys
// stored twice.

// deleter hard-deletes random keys, bare, at -deletes per second: mostly
// one key, one time in ten several.
func (s *soak) deleter(ctx context.Context, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(s.cfg.seed, ^uint64(0)))
	tick := time.NewTicker(max(time.Second/time.Duration(s.cfg.deletes), time.Microsecond))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-stop:
			return
		}
		n := 1
		if r.IntN(10) == 0 {
			n = 2 + r.IntN(s.cfg.batch)
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = s.keys[r.IntN(len(s.keys))]
		}
		res := s.db.WithContext(ctx).Where("item_key IN ?", keys).Delete(&Item{})
		s.deletes.Add(1)
		switch {
		case res.Error == nil:
			s.deletedRows.Add(res.RowsAffected)
		case safefind.IsRetryable(res.Error):
			s.deleteFailed.Add(1)
		case ctx.Err() != nil:
			return
		default:
			s.harness.Add(1)
			s.note(fmt.Sprintf("deleter: %v", res.Error))
		}
	}
}

// checker looks for keys stored twice every -check.
func (s *soak) checker(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(s.cfg.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.checkDuplicates(ctx)
		case <-stop:
			return
		}
	}
}

// checkDuplicates counts the keys stored more than once (the unique index
// should make it 0), and keeps the largest count seen.
func (s *soak) checkDuplicates(ctx context.Context) {
	var dups []struct {
		ItemKey string
		N       int64
	}
	err := s.db.WithContext(ctx).Model(&Item{}).Select("item_key, COUNT(*) AS n").
		Group("item_key").Having("COUNT(*) > 1").Scan(&dups).Error
	if err != nil {
		if ctx.Err() == nil {
			s.harness.Add(1)
			s.note(fmt.Sprintf("duplicate check: %v", err))
		}
		return
	}
	s.dupChecks.Add(1)
	for n := int64(len(dups)); ; {
		old := s.dupKeys.Load()
		if n <= old || s.dupKeys.CompareAndSwap(old, n) {
			break
		}
	}
	if len(dups) > 0 {
		s.note(fmt.Sprintf("key %q stored %d times", dups[0].ItemKey, dups[0].N))
	}
}
