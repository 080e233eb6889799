package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/driverrec"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// Batch upserts, measured with -upsert: each run upserts -upsert-rows rows
// in random order, of which a share -upsert-existing have a key that the
// table already holds (half of those with a changed value, half unchanged)
// and the rest are new. Compared:
//
//   - safefind UpsertAll, one call;
//   - GORM's Create with clause.OnConflict ... DoUpdates, in batches of
//     upsertChunk, as teams write it today;
//   - the same where GORM's ids go wrong: on PostgreSQL and SQLite with a
//     WHERE on DO UPDATE that leaves unchanged rows alone, as UpsertAll
//     does, so that RETURNING skips them while GORM hands out the rows it
//     gets by position; on MySQL/MariaDB as GORM runs it on a server
//     without RETURNING (MySQL, MariaDB before 10.5), giving the elements
//     LastInsertId, +1 each;
//   - a loop of safefind CreateOrFind with Assign, one call per row.
//
// Every run starts from the same table contents (the rows of the previous
// contender deleted, the existing keys inserted again), untimed and
// uncounted. After each run the table is read back and every element is
// checked against the stored row of its key: its id (a wrong or zero id is
// a "wrong id"), the stored value (the upsert applied), and, where the
// implementation reports them, its created flag (true exactly for the new
// keys). What each implementation sends is counted at the driver.

// upsertChunk is GORM's batch size here, and UpsertAll's default chunk.
const upsertChunk = 1000

// UpsertItem is the -upsert mode's row, upserted by its unique name.
type UpsertItem struct {
	ID        uint
	Name      string `gorm:"size:64;uniqueIndex"`
	Value     int
	UpdatedAt time.Time
}

// TableName keeps the mode's rows apart from the other modes'.
func (UpsertItem) TableName() string { return "upsert_items" }

// upserter is one way to upsert a batch of rows by name.
type upserter struct {
	name    string
	perCall bool // one call per row, not one per batch
	// fn upserts *rows in place. created is nil when the implementation
	// does not tell which rows it created. failed, when not nil, tells
	// which elements' calls failed; otherwise an error failed them all.
	fn func(db *gorm.DB, rows *[]UpsertItem) (created, failed []bool, err error)
}

// The names the table and the ratio refer to.
const (
	upsertAllName = "safefind UpsertAll"
	loopName      = "safefind CreateOrFind + Assign, per row"
)

// upsertersFor returns the contenders on db.
func upsertersFor(db *gorm.DB, kind string) ([]upserter, error) {
	onConflict := clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.AssignmentColumns([]string{"value", "updated_at"}),
	}
	gormUpsert := func(db *gorm.DB, oc clause.OnConflict) func(*gorm.DB, *[]UpsertItem) ([]bool, []bool, error) {
		return func(ctxDB *gorm.DB, rows *[]UpsertItem) ([]bool, []bool, error) {
			err := db.WithContext(ctxDB.Statement.Context).Clauses(oc).CreateInBatches(rows, upsertChunk).Error
			return nil, nil, err
		}
	}
	us := []upserter{
		{upsertAllName, false, func(db *gorm.DB, rows *[]UpsertItem) ([]bool, []bool, error) {
			created, err := safefind.UpsertAll(db, rows, []string{"name"}, "value")
			return created, nil, err
		}},
		{"gorm OnConflict + CreateInBatches", false, gormUpsert(db, onConflict)},
	}
	switch kind {
	case "mysql":
		// GORM reads ids from RETURNING on MariaDB 10.5+ only; elsewhere
		// it gives the slice's elements LastInsertId, +1 each.
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		plain, err := gorm.Open(mysql.New(mysql.Config{Conn: sqlDB, DisableWithReturning: true}),
			&gorm.Config{Logger: logger.Discard, TranslateError: true})
		if err != nil {
			return nil, err
		}
		us = append(us, upserter{"gorm OnConflict + CreateInBatches, no RETURNING (as on MySQL)", false, gormUpsert(plain, onConflict)})
	default:
		// Unchanged rows left alone: RETURNING then leaves them out.
		skip := onConflict
		skip.Where = clause.Where{Exprs: []clause.Expression{clause.Expr{SQL: "upsert_items.value <> excluded.value"}}}
		us = append(us, upserter{"gorm OnConflict + CreateInBatches, unchanged rows skipped (WHERE)", false, gormUpsert(db, skip)})
	}
	us = append(us, upserter{loopName, true, func(db *gorm.DB, rows *[]UpsertItem) ([]bool, []bool, error) {
		created := make([]bool, len(*rows))
		failed := make([]bool, len(*rows))
		var first error
		for i := range *rows {
			row := &(*rows)[i]
			var err error
			created[i], err = safefind.CreateOrFind(db.Assign(map[string]any{"value": row.Value}), row,
				map[string]any{"name": row.Name})
			if err != nil {
				failed[i] = true
				if first == nil {
					first = fmt.Errorf("%s: %w", row.Name, err)
				}
			}
		}
		return created, failed, first
	}})
	return us, nil
}

// upsertPlan is one run's batch: the rows to upsert, in the order sent,
// with what each must end as.
type upsertPlan struct {
	seed  []UpsertItem // the existing rows
	rows  []UpsertItem // the batch, shuffled
	isNew []bool       // per element of rows: its key did not exist
	added int          // new keys
}

// newUpsertPlan draws a batch of n rows, a share existing of them on
// existing keys. Keys interleave, so that every chunk mixes both.
func newUpsertPlan(n int, existing float64) upsertPlan {
	var p upsertPlan
	old := int(float64(n)*existing + 0.5)
	isOld := make([]bool, n)
	for _, i := range rand.Perm(n)[:old] {
		isOld[i] = true
	}
	changed := 0
	for i := range n {
		name := fmt.Sprintf("key-%07d", i)
		row := UpsertItem{Name: name, Value: i}
		if isOld[i] {
			p.seed = append(p.seed, UpsertItem{Name: name, Value: i})
			if changed%2 == 0 {
				row.Value = i + n
			}
			changed++
		} else {
			p.added++
		}
		p.rows = append(p.rows, row)
		p.isNew = append(p.isNew, !isOld[i])
	}
	rand.Shuffle(n, func(i, j int) {
		p.rows[i], p.rows[j] = p.rows[j], p.rows[i]
		p.isNew[i], p.isNew[j] = p.isNew[j], p.isNew[i]
	})
	return p
}

// upsertTally is what one implementation did over all runs.
type upsertTally struct {
	c                   counts
	rates               []float64
	units               int // chunks or calls
	wrongIDs            int
	wrongCreated        int
	wrongValues         int
	failures            int
	firstErr, firstBad  string
	createdTrue, wanted int  // created flags true, and new keys, summed over runs
	hasCreated          bool // the implementation reports created flags
}

func (t *upsertTally) problems() int { return t.wrongIDs + t.wrongCreated + t.wrongValues + t.failures }

func (t *upsertTally) bad(format string, args ...any) {
	if t.firstBad == "" {
		t.firstBad = fmt.Sprintf(format, args...)
	}
}

// runUpsert measures the upserters on db and prints the table, to md too
// unless it is empty. It fails if safefind returned an error, a wrong id,
// a wrong created flag or a value not stored.
func runUpsert(db *gorm.DB, kind string, n int, existing float64, runs int, md string) error {
	if n < 1 || existing < 0 || existing > 1 || runs < 1 {
		return errors.New("-upsert: need -upsert-rows ≥ 1, 0 ≤ -upsert-existing ≤ 1, -runs ≥ 1")
	}
	if err := db.AutoMigrate(&UpsertItem{}); err != nil {
		return err
	}
	us, err := upsertersFor(db, kind)
	if err != nil {
		return err
	}
	tallies := make([]*upsertTally, len(us))
	for i := range tallies {
		tallies[i] = &upsertTally{}
	}
	// A small untimed batch first, so that no contender's first run pays
	// for parsing the model or reading the catalog.
	warm := newUpsertPlan(min(n, 10), existing)
	for _, u := range us {
		var t upsertTally
		if err := upsertOnce(db, warm, u, &t); err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
		if strings.HasPrefix(u.name, "safefind") && t.problems() > 0 {
			return fmt.Errorf("%s failed on the warm-up batch of %d rows: %d wrong ids, %d wrong created flags, %d wrong values, %d failures: %s%s",
				u.name, len(warm.rows), t.wrongIDs, t.wrongCreated, t.wrongValues, t.failures, t.firstErr, t.firstBad)
		}
	}
	for range runs {
		plan := newUpsertPlan(n, existing)
		for _, i := range rand.Perm(len(us)) {
			if err := upsertOnce(db, plan, us[i], tallies[i]); err != nil {
				return fmt.Errorf("%s: %w", us[i].name, err)
			}
		}
	}
	for i, t := range tallies {
		created := "no created flags"
		if t.hasCreated {
			created = fmt.Sprintf("%d wrong created (%d true for %d new keys)", t.wrongCreated, t.createdTrue, t.wanted)
		}
		fmt.Fprintf(os.Stderr, "%-66s %9.0f rows/s  %d wrong ids  %s  %d wrong values  %d failures %s%s\n",
			us[i].name, median(t.rates), t.wrongIDs, created, t.wrongValues, t.failures, t.firstErr, t.firstBad)
	}
	table := upsertMarkdown(kind, n, existing, runs, us, tallies)
	fmt.Print(table)
	if md != "" {
		if err := os.WriteFile(md, []byte(table), 0o644); err != nil {
			return err
		}
	}
	for i, t := range tallies {
		if strings.HasPrefix(us[i].name, "safefind") && t.problems() > 0 {
			return fmt.Errorf("%s failed: %d wrong ids, %d wrong created flags, %d wrong values, %d failures: %s%s",
				us[i].name, t.wrongIDs, t.wrongCreated, t.wrongValues, t.failures, t.firstErr, t.firstBad)
		}
	}
	return nil
}

// upsertOnce resets the table to plan's existing rows, upserts plan's
// batch with u, timed and counted, and checks every element against the
// table.
func upsertOnce(db *gorm.DB, plan upsertPlan, u upserter, t *upsertTally) error {
	if err := db.Session(&gorm.Session{AllowGlobalUpdate: true}).Delete(&UpsertItem{}).Error; err != nil {
		return err
	}
	if len(plan.seed) > 0 {
		seed := slices.Clone(plan.seed)
		if err := db.CreateInBatches(&seed, 500).Error; err != nil {
			return err
		}
	}
	rows := slices.Clone(plan.rows)
	ctx := driverrec.WithSink(context.Background(), &t.c)

	start := time.Now()
	created, failed, err := u.fn(db.WithContext(ctx), &rows)
	t.rates = append(t.rates, float64(len(rows))/time.Since(start).Seconds())

	if u.perCall {
		t.units += len(rows)
	} else {
		t.units += (len(rows) + upsertChunk - 1) / upsertChunk
	}
	if err != nil {
		if t.firstErr == "" {
			t.firstErr = err.Error()
		}
		if failed == nil { // the whole batch failed: its elements are left as they were
			t.failures++
			return nil
		}
		for _, f := range failed {
			if f {
				t.failures++
			}
		}
	}

	var all []UpsertItem
	if err := db.Find(&all).Error; err != nil {
		return err
	}
	stored := make(map[string]UpsertItem, len(all))
	for _, s := range all {
		stored[s.Name] = s
	}
	if want := len(plan.seed) + plan.added; len(all) != want && err == nil {
		t.wrongValues++
		t.bad("; %d rows stored, want %d", len(all), want)
	}
	for i, row := range rows {
		if failed != nil && failed[i] {
			continue
		}
		s, ok := stored[row.Name]
		switch {
		case !ok:
			t.wrongValues++
			t.bad("; %s: not stored", row.Name)
			continue
		case row.ID != s.ID:
			t.wrongIDs++
			t.bad("; %s: element holds id %d, stored row has %d", row.Name, row.ID, s.ID)
		}
		if want := plan.rows[i].Value; s.Value != want {
			t.wrongValues++
			t.bad("; %s: stored value %d, want %d", row.Name, s.Value, want)
		}
		if created != nil {
			if created[i] {
				t.createdTrue++
			}
			if created[i] != plan.isNew[i] {
				t.wrongCreated++
				t.bad("; %s: created %t, want %t", row.Name, created[i], plan.isNew[i])
			}
		}
	}
	if created != nil {
		t.hasCreated = true
		t.wanted += plan.added
	}
	return nil
}

// upsertMarkdown renders the tallies, each throughput as a multiple of the
// per-row loop's.
func upsertMarkdown(kind string, n int, existing float64, runs int, us []upserter, ts []*upsertTally) string {
	var sb strings.Builder
	old := int(float64(n)*existing + 0.5)
	fmt.Fprintf(&sb, "## %s: upsert of %d rows in random order (%d on existing keys, %d of them with a changed value; %d new), median of %d runs\n\n",
		kind, n, old, (old+1)/2, n-old, runs)
	sb.WriteString("| implementation | rows/s | min–max | × per-row loop | statements per chunk or call | statements/run | round trips/run | wrong ids | wrong created | wrong values | failures |\n")
	sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var loop, batch float64 // the per-row loop's rows/s, UpsertAll's
	for i, u := range us {
		switch u.name {
		case loopName:
			loop = median(ts[i].rates)
		case upsertAllName:
			batch = median(ts[i].rates)
		}
	}
	elements := n * runs
	for i, u := range us {
		t := ts[i]
		unit := "chunk"
		if u.perCall {
			unit = "call"
		}
		created := "–"
		if t.hasCreated {
			created = count(t.wrongCreated, elements)
		}
		failures := errorCell(int64(t.failures), t.firstErr)
		fmt.Fprintf(&sb, "| %s | %.0f | %.0f–%.0f | %.1f× | %.2f / %s | %.1f | %.1f | %s | %s | %s | %s |\n",
			u.name, median(t.rates), slices.Min(t.rates), slices.Max(t.rates), median(t.rates)/loop,
			float64(t.c.stmts.Load())/float64(t.units), unit,
			float64(t.c.stmts.Load())/float64(runs), float64(t.c.trips.Load())/float64(runs),
			count(t.wrongIDs, elements), created, count(t.wrongValues, elements), failures)
	}
	fmt.Fprintf(&sb, "\nUpsertAll ÷ per-row loop: **%.1f×** rows/s (target: ≥ 10× at 1,000 rows). Counts are over all %d elements of the %d runs; statements and round trips are counted at the driver; the checks read the table back after each run.\n",
		batch/loop, elements, runs)
	return sb.String()
}

// count renders k of total, in bold when k is not zero.
func count(k, total int) string {
	if k == 0 {
		return "0"
	}
	return fmt.Sprintf("**%d** of %d", k, total)
}
