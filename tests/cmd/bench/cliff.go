package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safefind/safefind/tests/internal/driverrec"
	"gorm.io/gorm"
)

// PostgreSQL's subtransaction cliff, reproduced with the project's own API.
// Each backend caches the ids of 64 subtransactions; a transaction that keeps
// more overflows the cache, and while it runs, every snapshot taken anywhere
// is marked overflowed. A reader that then meets a row written by a
// transaction newer than the oldest snapshot's horizon must look its
// transaction up in pg_subtrans, an SLRU shared by the whole server.
//
// The scene: an idle transaction that holds the horizon back (as a slow
// report or a forgotten session does), a writer that keeps committing
// updates, readers that scan ranges of the updated rows, and an application
// transaction that find-or-creates -cliff-rows new rows and goes on with
// other work for -cliff-hold before it commits, over and over. It is
// played once per contender, each for -cliff-time, and reports the readers'
// throughput and the subtransactions each application transaction kept.

// readerRange is how many rows one reader query scans.
const readerRange = 1000

type cliffSide struct {
	name string
	app  *impl // nil: no application transaction
}

type cliffResult struct {
	side        string
	readsPerSec float64
	appTx       int
	keptMedian  int
	keptMax     int
}

func runCliff(db *gorm.DB, rows, xids int, d, hold time.Duration) error {
	const accounts = 20_000
	byName := map[string]*impl{}
	for i := range impls {
		byName[impls[i].name] = &impls[i]
	}
	sides := []cliffSide{
		{"readers alone (no application transaction)", nil},
		{"savepoint per insert (Django get_or_create)", byName["django get_or_create"]},
		{"savepoint per insert (Rails create_or_find_by)", byName["rails create_or_find_by"]},
		{"safefind FindOrCreate (savepoint budget 64)", byName["safefind FindOrCreate"]},
		{"safefind CreateOrFind (no savepoint)", byName["safefind CreateOrFind"]},
	}
	fmt.Printf("## PostgreSQL subtransaction cliff: an idle transaction holding the horizon, a committing writer, 4 readers scanning %d rows, and application transactions of %d find-or-creates held open %s; %s per side, after %d transactions past the horizon\n\n",
		readerRange, rows, hold, d, xids)
	var results []cliffResult
	var seq atomic.Int64
	for _, s := range sides {
		r, err := cliffRun(db, s, rows, xids, d, hold, accounts, &seq)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		results = append(results, r)
	}
	fmt.Println("| side | reader queries/s | × readers alone | application transactions | subtransactions kept per transaction (median / max) |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		kept := "–"
		if r.appTx > 0 {
			kept = fmt.Sprintf("%d / %d", r.keptMedian, r.keptMax)
		}
		fmt.Printf("| %s | %.0f | %.2f | %d | %s |\n", r.side, r.readsPerSec, r.readsPerSec/results[0].readsPerSec, r.appTx, kept)
	}
	return nil
}

// cliffRun plays the scene for one side, on fresh tables: each side starts
// from the same state, whatever the sides before it left behind.
func cliffRun(db *gorm.DB, s cliffSide, rows, xids int, d, hold time.Duration, accounts int, seq *atomic.Int64) (cliffResult, error) {
	for _, q := range []string{
		"DROP TABLE IF EXISTS cliff_accounts",
		"CREATE TABLE cliff_accounts (id int PRIMARY KEY, balance int NOT NULL)",
		fmt.Sprintf("INSERT INTO cliff_accounts SELECT g, 0 FROM generate_series(1, %d) g", accounts),
		"VACUUM ANALYZE cliff_accounts",
		"DROP TABLE IF EXISTS bench_items",
	} {
		if err := db.Exec(q).Error; err != nil {
			return cliffResult{}, err
		}
	}
	if err := db.AutoMigrate(&Item{}); err != nil {
		return cliffResult{}, err
	}
	// The idle transaction: it has an id, so it holds the horizon back.
	idle := db.Begin()
	if idle.Error != nil {
		return cliffResult{}, idle.Error
	}
	defer idle.Rollback()
	var horizon int64
	if err := idle.Raw("SELECT txid_current()").Scan(&horizon).Error; err != nil {
		return cliffResult{}, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return cliffResult{}, err
	}
	// Warm up: committed updates until the rows the readers scan carry
	// xids spread over more than pg_subtrans's 32 cached pages (2,048 xids
	// each) past the horizon.
	if err := burn(sqlDB, accounts, horizon+int64(xids)); err != nil {
		return cliffResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var reads atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		if ctx.Err() == nil {
			firstErr.CompareAndSwap(nil, err)
		}
	}
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := sqlDB.ExecContext(ctx, "UPDATE cliff_accounts SET balance = balance + 1 WHERE id = $1", 1+rand.IntN(accounts)); err != nil {
				fail(err)
			}
		}
	}()
	for range 4 { // the readers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				from := 1 + rand.IntN(accounts-readerRange)
				var sum int64
				err := sqlDB.QueryRowContext(ctx, "SELECT COALESCE(sum(balance), 0) FROM cliff_accounts WHERE id BETWEEN $1 AND $2", from, from+readerRange-1).Scan(&sum)
				if err != nil {
					fail(err)
					continue
				}
				reads.Add(1)
			}
		}()
	}
	var kept []int
	if s.app != nil {
		wg.Add(1)
		go func() { // the application
			defer wg.Done()
			for ctx.Err() == nil {
				var c counts
				tctx := driverrec.WithSink(ctx, &c)
				tx := db.WithContext(tctx).Begin()
				if tx.Error != nil {
					fail(tx.Error)
					continue
				}
				ok := true
				for range rows {
					if _, err := s.app.fn(tctx, tx, true, fmt.Sprintf("cliff-%d", seq.Add(1))); err != nil {
						fail(err)
						ok = false
						break
					}
				}
				if ok {
					// The application goes on with other work before it
					// commits; its subtransactions stay in the running
					// transaction meanwhile.
					select {
					case <-ctx.Done():
					case <-time.After(hold):
					}
				}
				if !ok || tx.Commit().Error != nil {
					tx.Rollback()
					continue
				}
				kept = append(kept, int(c.savepoints.Load()))
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return cliffResult{}, err
	}
	r := cliffResult{side: s.name, readsPerSec: float64(reads.Load()) / elapsed.Seconds(), appTx: len(kept)}
	if len(kept) > 0 {
		sort.Ints(kept)
		r.keptMedian, r.keptMax = kept[len(kept)/2], kept[len(kept)-1]
	}
	return r, nil
}

// burn runs committed updates from 4 connections until the server's next
// transaction id reaches target.
func burn(sqlDB *sql.DB, accounts int, target int64) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				for range 100 {
					if _, err := sqlDB.ExecContext(ctx, "UPDATE cliff_accounts SET balance = balance + 1 WHERE id = $1", 1+rand.IntN(accounts)); err != nil {
						if ctx.Err() == nil {
							firstErr.CompareAndSwap(nil, err)
						}
						cancel()
						return
					}
				}
				var now int64
				if err := sqlDB.QueryRowContext(ctx, "SELECT txid_current()").Scan(&now); err == nil && now >= target {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return nil
}
