// Command demo races goroutines on one key at a time, on an embedded SQLite
// database, first with GORM's FirstOrCreate, then with safefind's
// FindOrCreate and CreateOrFind, and prints what each left behind.
//
//	go run ./tests/cmd/demo [-workers 16] [-keys 50]
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/race"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Tag is looked up by its unique name.
type Tag struct {
	ID   uint
	Name string `gorm:"uniqueIndex"`
}

type result struct {
	calls, errors, created, rows, wrongIDs int64
	firstErr                               atomic.Value
}

func main() {
	workers := flag.Int("workers", 16, "goroutines released together on each key")
	keys := flag.Int("keys", 50, "keys, one after the other")
	flag.Parse()

	dir, err := os.MkdirTemp("", "safefind-demo")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dsn := "file:" + filepath.Join(dir, "demo.db") + "?_journal_mode=WAL&_busy_timeout=10000"
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	plugin := safefind.New()
	if err := db.Use(plugin); err != nil {
		log.Fatal(err)
	}

	fmt.Printf("%d goroutines race on each of %d new keys (SQLite, %s)\n\n", *workers, *keys, dsn)
	fmt.Printf("%-22s %8s %8s %8s %12s %10s\n", "implementation", "calls", "errors", "created", "rows per key", "wrong ids")
	impls := []struct {
		name string
		fn   func(tx *gorm.DB, tag *Tag, name string) (bool, error)
	}{
		{"gorm FirstOrCreate", func(tx *gorm.DB, tag *Tag, name string) (bool, error) {
			// FirstOrCreate returns the INSERT's result when it created the
			// row, and no rows affected when it found one.
			r := tx.Where(Tag{Name: name}).FirstOrCreate(tag)
			return r.Error == nil && r.RowsAffected == 1, r.Error
		}},
		{"safefind.FindOrCreate", func(tx *gorm.DB, tag *Tag, name string) (bool, error) {
			return safefind.FindOrCreate(tx, tag, Tag{Name: name})
		}},
		{"safefind.CreateOrFind", func(tx *gorm.DB, tag *Tag, name string) (bool, error) {
			return safefind.CreateOrFind(tx, tag, Tag{Name: name})
		}},
	}
	var errs []string
	for _, impl := range impls {
		if err := db.Migrator().DropTable(&Tag{}); err != nil {
			log.Fatal(err)
		}
		if err := db.AutoMigrate(&Tag{}); err != nil {
			log.Fatal(err)
		}
		var res result
		for k := range *keys {
			name := fmt.Sprintf("tag-%d", k)
			ids := make([]uint, *workers)
			race.Release(*workers, func(i int) {
				var tag Tag
				created, err := impl.fn(db, &tag, name)
				atomic.AddInt64(&res.calls, 1)
				if err != nil {
					atomic.AddInt64(&res.errors, 1)
					res.firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				if created {
					atomic.AddInt64(&res.created, 1)
				}
				ids[i] = tag.ID
			})
			var stored Tag
			if err := db.Where("name = ?", name).Take(&stored).Error; err != nil {
				log.Fatal(err)
			}
			for _, id := range ids {
				if id != 0 && id != stored.ID {
					res.wrongIDs++
				}
			}
		}
		var rows int64
		db.Model(&Tag{}).Count(&rows)
		fmt.Printf("%-22s %8d %8d %8d %12.2f %10d\n", impl.name, res.calls, res.errors, res.created, float64(rows)/float64(*keys), res.wrongIDs)
		if e := res.firstErr.Load(); e != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", impl.name, e))
		}
	}
	for _, e := range errs {
		fmt.Printf("\nfirst error of %s\n", e)
	}
	fmt.Printf("\nsafefind stats: %+v\n", plugin.Stats())
}
