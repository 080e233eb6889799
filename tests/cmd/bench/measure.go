package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/driverrec"
	"gorm.io/gorm"
)

// hitKeys is how many keys exist before the first run, for the hits.
const hitKeys = 1000

// budget is what each cell (workload × mode × implementation) may spend
// in one run: calls when not 0, else time.
type budget struct {
	calls int
	time  time.Duration
}

// verb says what a cell does with the budget: "ran for 1s", "made 40 calls".
func (bu budget) verb() string {
	if bu.calls > 0 {
		return fmt.Sprintf("made %d calls", bu.calls)
	}
	return "ran for " + bu.time.String()
}

func (bu budget) String() string {
	if bu.calls > 0 {
		return fmt.Sprintf("%d calls", bu.calls)
	}
	return bu.time.String()
}

type bench struct {
	db           *gorm.DB
	budget       budget
	runs, g      int
	txops        int
	existing     []string // keys that exist
	seq          atomic.Int64
	start, ended time.Time
}

// setup creates the table afresh and the keys that the hits find.
func (b *bench) setup() error {
	m := b.db.Migrator()
	if err := m.DropTable(&Item{}); err != nil {
		return err
	}
	if err := b.db.AutoMigrate(&Item{}); err != nil {
		return err
	}
	rows := make([]Item, hitKeys)
	for i := range rows {
		rows[i] = Item{Name: fmt.Sprintf("hit-%d", i)}
		b.existing = append(b.existing, rows[i].Name)
	}
	return b.db.CreateInBatches(&rows, 500).Error
}

// newKey returns a key no call has used.
func (b *bench) newKey() string { return fmt.Sprintf("new-%d", b.seq.Add(1)) }

// counts counts, at the driver, what one implementation's calls sent.
type counts struct{ stmts, trips, savepoints atomic.Int64 }

// Record implements driverrec.Sink: BEGIN, COMMIT and ROLLBACK are round
// trips, not statements.
func (c *counts) Record(sql string) {
	c.trips.Add(1)
	switch strings.ToUpper(sql) {
	case "BEGIN", "COMMIT", "ROLLBACK":
		return
	}
	c.stmts.Add(1)
	if len(sql) > 10 && strings.EqualFold(sql[:10], "SAVEPOINT ") {
		c.savepoints.Add(1)
	}
}

// result is what one cell did over all its runs.
type result struct {
	workload, mode, impl string
	opsPerSec            float64 // the median of the runs'
	minOps, maxOps       float64 // the slowest run's, the fastest's
	p50, p99             time.Duration
	stmts, trips, sps    float64 // per call
	errors               int64
	firstErr             string
	// fatal: errors that are not the database's retryable end of a
	// transaction (safefind.IsRetryable)
	fatal         int64
	firstFatalErr string
	calls         int64
}

// A cell is one implementation on one workload and mode; its meter
// gathers what it did over all runs.
type cell struct {
	w    workload
	inTx bool
	im   impl
	m    *meter
}

// meter gathers what one implementation did on one workload and mode.
type meter struct {
	c          counts
	ctx        context.Context // carries c to the driver
	rates      []float64       // calls per second, one per run
	calls      atomic.Int64
	errs       atomic.Int64
	firstErr   atomic.Value
	fatal      atomic.Int64
	firstFatal atomic.Value
	mu         sync.Mutex
	lat        latencies
}

func (m *meter) fail(err error) {
	m.errs.Add(1)
	m.firstErr.CompareAndSwap(nil, err.Error())
	if !safefind.IsRetryable(err) {
		m.fatal.Add(1)
		m.firstFatal.CompareAndSwap(nil, err.Error())
	}
}

func (m *meter) observe(lat []time.Duration) {
	m.mu.Lock()
	for _, d := range lat {
		m.lat.add(d)
	}
	m.mu.Unlock()
}

// measureAll measures every workload, mode and implementation in chosen,
// b.runs times, interleaved: run 1 of every cell, then run 2 of every
// cell, and so on, the cells in a new random order each run, so that
// whatever the machine does meanwhile falls on all of them alike.
func (b *bench) measureAll(chosen []impl) []result {
	var cells []cell
	for _, w := range workloads {
		for _, inTx := range []bool{false, true} {
			for _, im := range chosen {
				m := &meter{}
				m.ctx = driverrec.WithSink(context.Background(), &m.c)
				cells = append(cells, cell{w, inTx, im, m})
			}
		}
	}
	b.start = time.Now()
	for run := range b.runs {
		start := time.Now()
		for _, i := range rand.Perm(len(cells)) {
			b.measure(cells[i])
		}
		fmt.Fprintf(os.Stderr, "run %d of %d: %d cells in %s\n", run+1, b.runs, len(cells), time.Since(start).Round(time.Millisecond))
	}
	b.ended = time.Now()
	results := make([]result, len(cells))
	for i, c := range cells {
		results[i] = c.result()
	}
	return results
}

// measure runs one cell once, within b.budget.
func (b *bench) measure(c cell) {
	start := time.Now()
	more := func(calls int) bool {
		if b.budget.calls > 0 {
			return calls < b.budget.calls
		}
		return time.Since(start) < b.budget.time
	}
	var n int
	if c.w.contention {
		n = b.contended(c.m, c.inTx, c.im, more)
	} else {
		n = b.sequential(c.m, c.w, c.inTx, c.im, more)
	}
	c.m.rates = append(c.m.rates, float64(n)/time.Since(start).Seconds())
}

func (c cell) result() result {
	m := c.m
	r := result{workload: c.w.name, mode: txLabel(c.inTx), impl: c.im.name,
		opsPerSec: median(m.rates), minOps: slices.Min(m.rates), maxOps: slices.Max(m.rates),
		p50: m.lat.quantile(0.5), p99: m.lat.quantile(0.99),
		errors: m.errs.Load(), fatal: m.fatal.Load(), calls: m.calls.Load()}
	if s, ok := m.firstErr.Load().(string); ok {
		r.firstErr = s
	}
	if s, ok := m.firstFatal.Load().(string); ok {
		r.firstFatalErr = s
	}
	if n := float64(r.calls); n > 0 {
		r.stmts, r.trips, r.sps = float64(m.c.stmts.Load())/n, float64(m.c.trips.Load())/n, float64(m.c.savepoints.Load())/n
	}
	return r
}
