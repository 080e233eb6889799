package tests

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Batch benchmarks, on every configured database:
//
//	go test ./tests -run '^$' -bench Batch -benchtime 3x
//
// BenchmarkBatch reports rows/s and statements per call (counted at the
// driver) for the batch calls and the alternatives a GORM user would write:
// a loop of single calls, and CreateInBatches with ON CONFLICT DO NOTHING
// followed by a SELECT of every key. 1,000 keys by default; set
// SAFEFIND_BENCH_LARGE=1 for 100,000 too. BenchmarkBatchSpeedup times the
// batch call and the loop of single calls in the same iteration and reports
// their ratio.

type batchImpl struct {
	name string
	run  func(db *gorm.DB, rows []Tag) error
}

var batchImpls = []batchImpl{
	{"FindOrCreateAll", func(db *gorm.DB, rows []Tag) error {
		_, err := safefind.FindOrCreateAll(db, &rows, "name")
		return err
	}},
	{"CreateOrFindAll", func(db *gorm.DB, rows []Tag) error {
		_, err := safefind.CreateOrFindAll(db, &rows, "name")
		return err
	}},
	{"loop-FindOrCreate", func(db *gorm.DB, rows []Tag) error {
		for i := range rows {
			if _, err := safefind.FindOrCreate(db, &rows[i], Tag{Name: rows[i].Name}); err != nil {
				return err
			}
		}
		return nil
	}},
	{"loop-CreateOrFind", func(db *gorm.DB, rows []Tag) error {
		for i := range rows {
			if _, err := safefind.CreateOrFind(db, &rows[i], Tag{Name: rows[i].Name}); err != nil {
				return err
			}
		}
		return nil
	}},
	{"naive-CreateInBatches+select", func(db *gorm.DB, rows []Tag) error {
		// What a GORM user writes: it gives wrong ids where rows existed,
		// so every key is read again.
		if err := db.Clauses(clause.OnConflict{DoNothing: true}).CreateInBatches(&rows, 1000).Error; err != nil {
			return err
		}
		names := make([]string, len(rows))
		for i := range rows {
			names[i] = rows[i].Name
		}
		var stored []Tag
		for start := 0; start < len(names); start += 1000 {
			if err := db.Where("name IN ?", names[start:min(start+1000, len(names))]).Find(&stored).Error; err != nil {
				return err
			}
		}
		return nil
	}},
}

// prepare empties the table, stores existing% of the keys and returns rows
// for all of them.
func prepare(b *testing.B, e *env, keys, existing int) []Tag {
	b.Helper()
	e.reset(b, &Tag{})
	var seed []Tag
	for i := 0; i < keys; i++ {
		if existing > 0 && i%100 < existing {
			seed = append(seed, Tag{Name: fmt.Sprintf("k%06d", i)})
		}
	}
	if len(seed) > 0 {
		if err := e.other.CreateInBatches(&seed, 2000).Error; err != nil {
			b.Fatal(err)
		}
	}
	rows := make([]Tag, keys)
	for i := range rows {
		rows[i].Name = fmt.Sprintf("k%06d", i)
	}
	return rows
}

func benchDBs(b *testing.B, fn func(b *testing.B, e *env)) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		b.Run(name, func(b *testing.B) {
			fn(b, open(b, name))
		})
	}
}

func BenchmarkBatch(b *testing.B) {
	sizes := []int{1000}
	if os.Getenv("SAFEFIND_BENCH_LARGE") != "" {
		sizes = append(sizes, 100_000)
	}
	benchDBs(b, func(b *testing.B, e *env) {
		for _, keys := range sizes {
			for _, existing := range []int{0, 50, 100} {
				for _, impl := range batchImpls {
					b.Run(fmt.Sprintf("keys=%d/existing=%d%%/%s", keys, existing, impl.name), func(b *testing.B) {
						var stmts int
						var busy time.Duration
						for range b.N {
							b.StopTimer()
							rows := prepare(b, e, keys, existing)
							r := &Recorder{}
							db := e.db.WithContext(withRecorder(context.Background(), r))
							start := time.Now()
							b.StartTimer()
							if err := impl.run(db, rows); err != nil {
								b.Fatal(err)
							}
							b.StopTimer()
							busy += time.Since(start)
							stmts += len(r.Statements())
						}
						b.ReportMetric(float64(keys*b.N)/busy.Seconds(), "rows/s")
						b.ReportMetric(float64(stmts)/float64(b.N), "stmts/op")
					})
				}
			}
		}
	})
}

func BenchmarkBatchSpeedup(b *testing.B) {
	const keys = 1000
	benchDBs(b, func(b *testing.B, e *env) {
		for _, pair := range [][2]batchImpl{{batchImpls[0], batchImpls[2]}, {batchImpls[1], batchImpls[3]}} {
			for _, existing := range []int{0, 50, 100} {
				b.Run(fmt.Sprintf("%s/existing=%d%%", pair[0].name, existing), func(b *testing.B) {
					var batch, loop time.Duration
					for range b.N {
						for k, impl := range pair {
							rows := prepare(b, e, keys, existing)
							start := time.Now()
							if err := impl.run(e.db, rows); err != nil {
								b.Fatal(err)
							}
							if k == 0 {
								batch += time.Since(start)
							} else {
								loop += time.Since(start)
							}
						}
					}
					b.ReportMetric(loop.Seconds()/batch.Seconds(), "x-vs-loop")
				})
			}
		}
	})
}
