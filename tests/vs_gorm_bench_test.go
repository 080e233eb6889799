package tests

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// safefind's own CPU against GORM doing the same job, on in-memory SQLite,
// where the server's time is near zero and the client is what is measured:
//
//	go test ./tests -run '^$' -bench VsGORM -benchmem
//
// Each pair runs in the same iteration, alternately, and reports the ratio
// of safefind's time to GORM's (x-gorm; the target is ≤ 1.10).
// TestAllocsVsGORM holds the allocations per call, which are deterministic.

// vsGORM is one path beside GORM doing the same job.
type vsGORM struct {
	name     string
	miss     bool // every call on a new key
	safefind func(db *gorm.DB, key string) error
	gorm     func(db *gorm.DB, key string) error
}

var vsGORMPairs = []vsGORM{
	{"FindOrCreate-vs-FirstOrCreate/hit", false, findOrCreateTag, firstOrCreateTag},
	{"FindOrCreate-vs-FirstOrCreate/miss", true, findOrCreateTag, firstOrCreateTag},
	{"CreateOrFind-vs-CreateDoNothing/miss", true,
		func(db *gorm.DB, key string) error {
			var t Tag
			_, err := safefind.CreateOrFind(db, &t, Tag{Name: key})
			return err
		},
		func(db *gorm.DB, key string) error {
			return db.Clauses(clause.OnConflict{DoNothing: true}).Create(&Tag{Name: key}).Error
		}},
	{"FindOrCreate+Assign-vs-FirstOrCreate+Assign/hit", false,
		func(db *gorm.DB, key string) error {
			var t Tag
			_, err := safefind.FindOrCreate(db.Where(Tag{Name: key}).Assign(Tag{Note: "assigned"}), &t)
			return err
		},
		func(db *gorm.DB, key string) error {
			var t Tag
			return db.Where(Tag{Name: key}).Assign(Tag{Note: "assigned"}).FirstOrCreate(&t).Error
		}},
}

func findOrCreateTag(db *gorm.DB, key string) error {
	var t Tag
	_, err := safefind.FindOrCreate(db, &t, Tag{Name: key})
	return err
}

func firstOrCreateTag(db *gorm.DB, key string) error {
	var t Tag
	return db.Where(Tag{Name: key}).FirstOrCreate(&t).Error
}

var memoryDBs atomic.Int64

// openMemory opens an in-memory SQLite database, shared by the pool's
// connections, with a row "hit".
func openMemory(tb testing.TB) *env {
	tb.Helper()
	e := openDSN(tb, "sqlite", fmt.Sprintf("file:vsgorm%d?mode=memory&cache=shared", memoryDBs.Add(1)))
	e.reset(tb, &Tag{})
	if err := e.other.Create(&Tag{Name: "hit"}).Error; err != nil {
		tb.Fatal(err)
	}
	return e
}

// vsKeys hands out the key of each call: "hit", or a new key per call.
type vsKeys struct {
	miss bool
	n    int
}

func (k *vsKeys) next(prefix string) string {
	if !k.miss {
		return "hit"
	}
	k.n++
	return prefix + strconv.Itoa(k.n)
}

func BenchmarkVsGORM(b *testing.B) {
	e := openMemory(b)
	for _, p := range vsGORMPairs {
		// One counter over every run of the pair (the benchmark runs it
		// with growing b.N): a miss's key is never one an earlier run made.
		keys := &vsKeys{miss: p.miss}
		b.Run(p.name, func(b *testing.B) {
			var own, theirs time.Duration
			b.ReportAllocs()
			for range b.N {
				start := time.Now()
				if err := p.safefind(e.db, keys.next(p.name+"-s")); err != nil {
					b.Fatal(err)
				}
				own += time.Since(start)
				start = time.Now()
				if err := p.gorm(e.db, keys.next(p.name+"-g")); err != nil {
					b.Fatal(err)
				}
				theirs += time.Since(start)
			}
			b.ReportMetric(float64(own.Nanoseconds())/float64(b.N), "safefind-ns/op")
			b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "gorm-ns/op")
			b.ReportMetric(own.Seconds()/theirs.Seconds(), "x-gorm")
		})
	}
}

// The allocations per call of each path and of GORM doing the same job.
// They are deterministic within a count or two: the ceilings hold what the
// paths cost today, so that a change that adds allocations is seen; the
// ratio to GORM's is logged (the target is ≤ 1.10).
func TestAllocsVsGORM(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	// Today's counts, plus 2: the driver's statement cache and sync.Map
	// nodes move a count by one or two between runs.
	ceilings := map[string]float64{
		"FindOrCreate-vs-FirstOrCreate/hit":               70 + 2,
		"FindOrCreate-vs-FirstOrCreate/miss":              114 + 2,
		"CreateOrFind-vs-CreateDoNothing/miss":            84 + 2,
		"FindOrCreate+Assign-vs-FirstOrCreate+Assign/hit": 151 + 2,
	}
	e := openMemory(t)
	for _, p := range vsGORMPairs {
		keys := &vsKeys{miss: p.miss}
		run := func(call func(db *gorm.DB, key string) error, prefix string) float64 {
			return testing.AllocsPerRun(200, func() {
				if err := call(e.db, keys.next(prefix)); err != nil {
					t.Fatal(err)
				}
			})
		}
		own, theirs := run(p.safefind, p.name+"-s"), run(p.gorm, p.name+"-g")
		t.Logf("%-50s safefind %4.0f allocs, GORM %4.0f: %.2f×", p.name, own, theirs, own/theirs)
		if own > ceilings[p.name] {
			t.Errorf("%s: %.0f allocs per call, more than the %.0f it took", p.name, own, ceilings[p.name])
		}
	}
}
