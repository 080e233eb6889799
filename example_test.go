package safefind_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/safefind/safefind"
	"gorm.io/gorm"
)

// These examples are compiled but not run, so that this module needs no
// database driver. Runnable ones, on embedded SQLite, are in the tests module.

// Tag is the model of the examples: a name, unique, and a note.
type Tag struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
	Note string `gorm:"size:64"`
}

// dialector is your driver's, e.g. postgres.Open(dsn) from
// gorm.io/driver/postgres, mysql.Open(dsn) or sqlite.Open(path).
var dialector gorm.Dialector

// openDB opens the database with your driver, as
// gorm.Open(postgres.Open(dsn), &gorm.Config{}), and migrates the tags table.
func openDB() *gorm.DB {
	db, err := gorm.Open(dialector, &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Tag{}); err != nil {
		log.Fatal(err)
	}
	return db
}

func ExampleNew() {
	db := openDB()
	p := safefind.New()
	if err := db.Use(p); err != nil {
		log.Fatal(err)
	}
	// The calls now work on db and every session and transaction derived from it.

	var tag Tag
	if _, err := safefind.FindOrCreate(db, &tag, Tag{Name: "go"}); err != nil {
		log.Fatal(err)
	}
	s := p.Stats()
	fmt.Println("found:", s.Found, "created:", s.Created, "savepoints:", s.Savepoints)
}

func ExampleFindOrCreate() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	tag := Tag{Note: "a language"} // used only if the row is created
	created, err := safefind.FindOrCreate(db, &tag, Tag{Name: "go"})
	if err != nil {
		log.Fatal(err)
	}
	// tag holds the stored row, found or created. Of concurrent callers on one
	// name, exactly one gets created true; the others get its row.
	fmt.Println(created, tag.ID, tag.Name, tag.Note)

	// A lookup no unique index covers is refused before anything is sent:
	// concurrent callers would each insert a row.
	_, err = safefind.FindOrCreate(db, &Tag{}, Tag{Note: "a language"})
	fmt.Println(errors.Is(err, safefind.ErrKeyNotUnique))
}

func ExampleCreateOrFind() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// Insert first, for rows that are usually new: no savepoint, inside a
	// transaction or not.
	err := db.Transaction(func(tx *gorm.DB) error {
		var tag Tag
		created, err := safefind.CreateOrFind(tx, &tag, map[string]any{"name": "go"})
		if err != nil {
			return err
		}
		fmt.Println(created, tag.ID)
		return nil
	})
	if err != nil {
		// IsRetryable: a serialization failure or a deadlock ended the
		// transaction, which can run again (RetryTransaction does that).
		log.Fatalf("retryable %t: %v", safefind.IsRetryable(err), err)
	}

	// The INSERT comes first, so every condition must be a column equality.
	_, err = safefind.CreateOrFind(db, &Tag{}, "name LIKE ?", "go%")
	fmt.Println(errors.Is(err, safefind.ErrUnsupportedCondition))
}

func ExampleFindOrCreateAll() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	rows := []Tag{{Name: "go"}, {Name: "sql"}, {Name: "go"}}
	created, err := safefind.FindOrCreateAll(db, &rows, "name")
	if errors.Is(err, safefind.ErrKeyNotUnique) {
		log.Fatal("name needs a unique index: ", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	// rows[i] holds the stored row, in your order; duplicates share one row.
	// created[i] is true for the elements whose row this call inserted.
	for i, row := range rows {
		fmt.Println(row.ID, row.Name, created[i])
	}
}

func ExampleCreateOrFindAll() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// Insert first, for keys that are usually new: one INSERT that skips the
	// existing rows, then one SELECT of those.
	rows := []Tag{{Name: "go", Note: "new"}, {Name: "sql", Note: "new"}}
	created, err := safefind.CreateOrFindAll(db, &rows, "name")
	if err != nil {
		log.Fatal(err)
	}
	// An existing row keeps its note; rows[i] holds it as stored.
	for i, row := range rows {
		fmt.Println(row.ID, row.Name, row.Note, created[i])
	}
}

func ExampleUpsertAll() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// Insert each tag, or give the existing tag with its name the new note.
	rows := []Tag{{Name: "go", Note: "a language"}, {Name: "sql", Note: "a query language"}}
	created, err := safefind.UpsertAll(db, &rows, []string{"name"}, "note")
	if err != nil {
		log.Fatal(err)
	}
	// rows[i].ID is the stored row's, matched by key; created[i] is true for the rows inserted.
	for i, row := range rows {
		fmt.Println(row.ID, row.Name, created[i])
	}

	// One key with two different values: which to store is not clear.
	twice := []Tag{{Name: "go", Note: "a"}, {Name: "go", Note: "b"}}
	_, err = safefind.UpsertAll(db, &twice, []string{"name"}, "note")
	fmt.Println(errors.Is(err, safefind.ErrConflictingDuplicates))
}

func ExampleRetryTransaction() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// fn runs again while it fails with an error for which IsRetryable is
	// true, within the context's deadline; it must be safe to run more than once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var tag Tag
	err := safefind.RetryTransaction(db.WithContext(ctx), func(tx *gorm.DB) error {
		_, err := safefind.FindOrCreate(tx, &tag, Tag{Name: "go"})
		return err
	}, safefind.RetryTxOptions(&sql.TxOptions{Isolation: sql.LevelSerializable}))
	if err != nil {
		var re *safefind.RetryError
		if errors.As(err, &re) {
			log.Printf("gave up after %d attempts", re.Attempts)
		}
		log.Fatal(err)
	}
	fmt.Println(tag.ID, tag.Name)
}

func ExampleWithObserver() {
	db := openDB()
	var mu sync.Mutex
	outcomes := map[string]int{} // a metrics library's counter vector
	observe := func(ctx context.Context, e safefind.Event) {
		// ctx is the caller's: attach the event to its trace span here.
		mu.Lock()
		defer mu.Unlock()
		outcomes[e.Table+" "+e.Kind.String()] += e.Rows
	}
	if err := db.Use(safefind.New(safefind.WithObserver(observe))); err != nil {
		log.Fatal(err)
	}

	for _, name := range []string{"go", "sql", "go"} {
		if _, err := safefind.FindOrCreate(db, &Tag{}, Tag{Name: name}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("created:", outcomes["tags created"], "found:", outcomes["tags found"])
}

func ExampleWithCounter() {
	db := openDB()
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// Count what one unit of work sent, e.g. to assert in a test that a code
	// path opened no savepoint.
	var c safefind.Counter
	ctx := safefind.WithCounter(context.Background(), &c)
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		_, err := safefind.FindOrCreate(tx, &Tag{}, Tag{Name: "go"})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("statements:", c.Statements(), "savepoints:", c.Savepoints())
}
