package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"

	"github.com/safefind/safefind"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"
)

// The examples run on embedded SQLite. They live in the tests module so that
// the library module requires nothing but GORM.

var exampleDBs atomic.Int64

// openExample opens a fresh in-memory SQLite database.
func openExample(name string) *gorm.DB {
	dsn := fmt.Sprintf("file:%s-%d?mode=memory&cache=shared", name, exampleDBs.Add(1))
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Tag{}, &Member{}); err != nil {
		log.Fatal(err)
	}
	return db
}

// Register the plugin once, then find or create.
func Example() {
	db := openExample("example")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// Read first, for rows that usually exist.
	var tag Tag
	created, err := safefind.FindOrCreate(db, &tag, Tag{Name: "go"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(created, tag.ID, tag.Name) // on an empty table: true 1 go

	// Insert first, for rows that usually do not exist.
	var again Tag
	created, err = safefind.CreateOrFind(db, &again, Tag{Name: "go"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(created, again.ID, again.Name) // false 1 go: the row exists
	// Output:
	// true 1 go
	// false 1 go
}

// The README's migration table: each FirstOrCreate form, in the comment,
// and the safefind form that replaces it.
func Example_migration() {
	db := openExample("migration")
	if err := db.AutoMigrate(customerTables...); err != nil {
		log.Fatal(err)
	}
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}
	check := func(created bool, err error) bool {
		if err != nil {
			log.Fatal(err)
		}
		return created
	}

	// Where: db.Where("name = ?", "go").FirstOrCreate(&tag)
	var tag Tag
	fmt.Println("Where:", check(safefind.FindOrCreate(db.Where("name = ?", "go"), &tag)), tag.ID)

	// Inline conditions: db.FirstOrCreate(&tag, Tag{Name: "go"}), or db.FirstOrCreate(&tag, "name = ?", "go")
	tag = Tag{}
	fmt.Println("inline:", check(safefind.FindOrCreate(db, &tag, Tag{Name: "go"})), tag.ID)
	tag = Tag{}
	fmt.Println("inline SQL:", check(safefind.FindOrCreate(db, &tag, "name = ?", "go")), tag.ID)

	// Insert first, for rows that are usually new: db.FirstOrCreate(&tag, Tag{Name: "sql"})
	tag = Tag{}
	fmt.Println("insert first:", check(safefind.CreateOrFind(db, &tag, Tag{Name: "sql"})), tag.ID)

	// Attrs: db.Where(Member{OrgID: 7, Email: "ada@x"}).Attrs(Member{Age: 36}).FirstOrCreate(&m)
	var m Member
	fmt.Println("Attrs:", check(safefind.FindOrCreate(db.Where(Member{OrgID: 7, Email: "ada@x"}).Attrs(Member{Age: 36}), &m)), m.Age, m.Handle == "")

	// Assign: db.Where(Member{OrgID: 7, Email: "ada@x"}).Assign(Member{Handle: "ada"}).FirstOrCreate(&m)
	m = Member{}
	fmt.Println("Assign:", check(safefind.FindOrCreate(db.Where(Member{OrgID: 7, Email: "ada@x"}).Assign(Member{Handle: "ada"}), &m)), m.Age, m.Handle)

	// Associations: c := Customer{Name: "ada", Wallet: &Wallet{Number: "W-1"}}, then db.FirstOrCreate(&c, Customer{Name: "ada"})
	c := Customer{Name: "ada", Wallet: &Wallet{Number: "W-1"}}
	fmt.Println("associations:", check(safefind.FindOrCreate(db, &c, Customer{Name: "ada"})), c.Wallet.ID)
	c = Customer{Name: "ada", Wallet: &Wallet{Number: "W-2"}} // found: W-2 is not saved
	fmt.Println("associations:", check(safefind.FindOrCreate(db, &c, Customer{Name: "ada"})), c.ID)
	var wallets int64
	if err := db.Model(&Wallet{}).Count(&wallets).Error; err != nil {
		log.Fatal(err)
	}
	fmt.Println("wallets:", wallets)

	// Scopes: db.Scopes(inOrg(7)).FirstOrCreate(&m, Member{Email: "bob@x"})
	inOrg := func(org uint) func(*gorm.DB) *gorm.DB {
		return func(tx *gorm.DB) *gorm.DB { return tx.Where("org_id = ?", org) }
	}
	m = Member{Handle: "bob"}
	fmt.Println("Scopes:", check(safefind.FindOrCreate(db.Scopes(inOrg(7)), &m, Member{Email: "bob@x"})), m.OrgID, m.Email)

	// In a transaction: tx.FirstOrCreate(&tag, Tag{Name: "sql"}) inside db.Transaction
	err := db.Transaction(func(tx *gorm.DB) error {
		tag = Tag{}
		if _, err := safefind.FindOrCreate(tx, &tag, Tag{Name: "sql"}); err != nil {
			return err
		}
		tag = Tag{}
		_, err := safefind.CreateOrFind(tx, &tag, Tag{Name: "sql"})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("transaction:", tag.ID)

	// A loop: for i := range tags { db.FirstOrCreate(&tags[i], Tag{Name: tags[i].Name}) }
	tags := []Tag{{Name: "go"}, {Name: "sql"}, {Name: "db"}}
	created, err := safefind.FindOrCreateAll(db, &tags, "name")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("FindOrCreateAll:", created)
	tags = []Tag{{Name: "db"}, {Name: "orm"}}
	created, err = safefind.CreateOrFindAll(db, &tags, "name")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("CreateOrFindAll:", created)

	// An upsert loop: for i := range tags { db.Where(Tag{Name: tags[i].Name}).Assign(Tag{Note: tags[i].Note}).FirstOrCreate(&tags[i]) }
	tags = []Tag{{Name: "go", Note: "a language"}, {Name: "sqlite", Note: "a database"}}
	created, err = safefind.UpsertAll(db, &tags, []string{"name"}, "note")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("UpsertAll:", created, tags[0].ID, tags[0].Note)
	// Output:
	// Where: true 1
	// inline: false 1
	// inline SQL: false 1
	// insert first: true 2
	// Attrs: true 36 true
	// Assign: false 36 ada
	// associations: true 1
	// associations: false 1
	// wallets: 1
	// Scopes: true 7 bob@x
	// transaction: 2
	// FindOrCreateAll: [false false true]
	// CreateOrFindAll: [false true]
	// UpsertAll: [false true] 1 a language
}

// The lookup is the chain plus the inline conditions; dest carries the
// attributes to create with. Its equalities are set on the row created.
func Example_findOrCreate() {
	db := openExample("find_or_create")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	m := Member{Handle: "ada", Age: 36} // used only if the row is created
	created, err := safefind.FindOrCreate(db.Where("org_id = ?", 7), &m, "email = ?", "ada@example.com")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(created, m.OrgID, m.Email, m.Handle, m.Age)
	// Output:
	// true 7 ada@example.com ada 36
}

// Attrs and Assign as FirstOrCreate takes them: Attrs only when the row is
// created, Assign on the row created and on the row found, which is updated.
func Example_attrsAssign() {
	db := openExample("attrs_assign")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// db.Where(Member{OrgID: 7, Email: "ada@x"}).Attrs(Member{Age: 36}).Assign(Member{Handle: "ada"}).FirstOrCreate(&m)
	var m Member
	chain := db.Where(Member{OrgID: 7, Email: "ada@x"}).Attrs(Member{Age: 36}).Assign(Member{Handle: "ada"})
	created, err := safefind.FindOrCreate(chain, &m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(created, m.Email, m.Age, m.Handle)

	var found Member
	created, err = safefind.FindOrCreate(db.Where(Member{OrgID: 7, Email: "ada@x"}).Attrs(Member{Age: 99}).Assign(Member{Handle: "lovelace"}), &found)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(created, found.Email, found.Age, found.Handle)
	// Output:
	// true ada@x 36 ada
	// false ada@x 36 lovelace
}

// Insert first when the row is usually new: one INSERT on a miss, and never
// a savepoint, inside a transaction or not.
func Example_createOrFind() {
	db := openExample("create_or_find")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	err := db.Transaction(func(tx *gorm.DB) error {
		for _, name := range []string{"a", "b", "a"} {
			var tag Tag
			created, err := safefind.CreateOrFind(tx, &tag, map[string]any{"name": name})
			if err != nil {
				return err
			}
			fmt.Println(name, created, tag.ID)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// a true 1
	// b true 2
	// a false 1
}

// Count what one unit of work sent, to assert in a test that a code path
// opened no savepoint.
func Example_counter() {
	db := openExample("counter")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

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
	// Output:
	// statements: 2 savepoints: 0
}

// Errors are sentinels, tested with errors.Is; bad input writes nothing.
func Example_errors() {
	db := openExample("errors")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	// A zero-valued struct: GORM would drop it and match any row.
	_, err := safefind.FindOrCreate(db, &Tag{}, Tag{Name: ""})
	fmt.Println(errors.Is(err, safefind.ErrNoConditions))

	// A *gorm.DB without the plugin.
	plain := openExample("errors_plain")
	_, err = safefind.CreateOrFind(plain, &Tag{}, Tag{Name: "go"})
	fmt.Println(errors.Is(err, safefind.ErrNotRegistered))
	// Output:
	// true
	// true
}

// Run a transaction again when the database says so: a serialization
// failure, a deadlock, a busy database, or a snapshot that cannot see the
// winner's row. fn must be safe to run more than once.
func Example_retryTransaction() {
	db := openExample("retry")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	var tag Tag
	err := safefind.RetryTransaction(db, func(tx *gorm.DB) error {
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
	// Output:
	// 1 go
}

// Feed metrics or traces from an observer; Stats are the zero-setup view.
func Example_withObserver() {
	db := openExample("observer")
	var mu sync.Mutex
	outcomes := map[string]int{} // a metrics library's counter vector
	observe := func(ctx context.Context, e safefind.Event) {
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
	fmt.Println(outcomes["tags created"], outcomes["tags found"])
	// Output:
	// 2 1
}

// Find or create many rows at once: one round trip per step and chunk.
func Example_findOrCreateAll() {
	db := openExample("find_or_create_all")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}

	rows := []Tag{{Name: "go"}, {Name: "sql"}, {Name: "go"}}
	created, err := safefind.FindOrCreateAll(db, &rows, "name")
	if err != nil {
		log.Fatal(err)
	}
	// rows[i] holds the stored row, in your order; duplicates share one row.
	// created[i] is true for the elements whose row this call inserted.
	for i, row := range rows {
		fmt.Println(row.ID, row.Name, created[i])
	}
	// Output:
	// 1 go true
	// 2 sql true
	// 1 go false
}

// Insert rows or update the existing ones with their key, and learn which.
func Example_upsertAll() {
	db := openExample("upsert_all")
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Alias{}); err != nil {
		log.Fatal(err)
	}
	if err := db.Create(&Alias{AliasName: "golang", ModelID: 3}).Error; err != nil {
		log.Fatal(err)
	}

	aliases := []Alias{{AliasName: "gopher", ModelID: 7}, {AliasName: "golang", ModelID: 7}}
	created, err := safefind.UpsertAll(db, &aliases, []string{"alias_name"}, "model_id")
	if err != nil {
		log.Fatal(err)
	}
	// aliases[i].ID is the stored row's, matched by key; created[i] is true for the rows inserted.
	for i, a := range aliases {
		fmt.Println(a.AliasName, a.ModelID, created[i], a.ID > 0)
	}
	// Output:
	// gopher 7 true true
	// golang 7 false true
}

// With GORM's dbresolver, a replica may serve FindOrCreate's first read;
// after a miss, the INSERT and the read of a conflict's winner go to the
// primary. Here the replica lags: it has not received the primary's row.
func Example_readReplicas() {
	db := openExample("primary")
	replica := openExample("replica") // lagging: it has none of the primary's rows
	err := db.Use(dbresolver.Register(dbresolver.Config{
		Replicas: []gorm.Dialector{replica.Dialector},
	}))
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Use(safefind.New()); err != nil {
		log.Fatal(err)
	}
	if err := db.Create(&Tag{Name: "go", Note: "on the primary"}).Error; err != nil {
		log.Fatal(err)
	}

	var tag Tag
	created, err := safefind.FindOrCreate(db, &tag, Tag{Name: "go"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(created, tag.ID, tag.Note)
	// Output:
	// false 1 on the primary
}
