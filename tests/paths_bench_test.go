package tests

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/safefind/safefind"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Single-row paths, on SQLite (a file in a temporary directory), where the
// server's time is small and allocations are the client's own:
//
//	go test ./tests -run '^$' -bench Paths -benchmem
//
// GORM's FirstOrCreate runs beside them as the baseline.
func BenchmarkPaths(b *testing.B) {
	e := openDSN(b, "sqlite", "file:"+filepath.Join(b.TempDir(), "paths.db")+"?_journal_mode=WAL&_busy_timeout=20000")
	e.reset(b, &Tag{})
	if err := e.other.Create(&Tag{Name: "hit"}).Error; err != nil {
		b.Fatal(err)
	}
	db := e.db
	findOrCreate := func(db *gorm.DB, key string) error {
		var t Tag
		_, err := safefind.FindOrCreate(db, &t, Tag{Name: key})
		return err
	}
	createOrFind := func(db *gorm.DB, key string) error {
		var t Tag
		_, err := safefind.CreateOrFind(db, &t, Tag{Name: key})
		return err
	}
	firstOrCreate := func(db *gorm.DB, key string) error {
		var t Tag
		return db.Where(Tag{Name: key}).FirstOrCreate(&t).Error
	}
	withAssign := func(call func(tx *gorm.DB, dest any, conds ...any) (bool, error)) func(db *gorm.DB, key string) error {
		return func(db *gorm.DB, key string) error {
			var t Tag
			_, err := call(db.Where(Tag{Name: key}).Assign(Tag{Note: "assigned"}), &t)
			return err
		}
	}
	paths := []struct {
		name string
		run  func(db *gorm.DB, key string) error
		miss bool
	}{
		{"FindOrCreate/hit", findOrCreate, false},
		{"FindOrCreate/miss", findOrCreate, true},
		{"CreateOrFind/hit", createOrFind, false},
		{"CreateOrFind/miss", createOrFind, true},
		{"FirstOrCreate/hit", firstOrCreate, false},
		{"FirstOrCreate/miss", firstOrCreate, true},
		{"FindOrCreate+Assign/hit", withAssign(safefind.FindOrCreate), false},
		{"CreateOrFind+Assign/hit", withAssign(safefind.CreateOrFind), false},
		{"Create+DoNothing/miss", func(db *gorm.DB, key string) error {
			return db.Clauses(clause.OnConflict{DoNothing: true}).Create(&Tag{Name: key}).Error
		}, true},
		{"FirstOrCreate+Assign/hit", func(db *gorm.DB, key string) error {
			var t Tag
			return db.Where(Tag{Name: key}).Assign(Tag{Note: "assigned"}).FirstOrCreate(&t).Error
		}, false},
	}
	round := 0 // a miss needs a key no earlier round created
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			round++
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = "hit"
				if p.miss {
					keys[i] = "r" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := p.run(db, keys[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
