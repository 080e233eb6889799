package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/safefind/safefind"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Item is the benchmark's row: looked up by its unique name.
type Item struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
	Note string `gorm:"size:64"`
}

// TableName keeps the benchmark's rows apart from the tests'.
func (Item) TableName() string { return "bench_items" }

// impl is one way to find or create an Item by name. db is the bare
// *gorm.DB or a transaction on it; inTx says which.
type impl struct {
	name string
	fn   func(ctx context.Context, db *gorm.DB, inTx bool, name string) (uint, error)
}

// impls are the contenders. The ORM re-creations follow each ORM's
// algorithm statement for statement, over GORM, on the same connection
// pool; where the ORM opens a savepoint inside a transaction and a
// transaction outside one, so do they.
var impls = []impl{
	{"safefind FindOrCreate", func(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
		var it Item
		_, err := safefind.FindOrCreate(db.WithContext(ctx), &it, Item{Name: name})
		return it.ID, err
	}},
	{"safefind CreateOrFind", func(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
		var it Item
		_, err := safefind.CreateOrFind(db.WithContext(ctx), &it, Item{Name: name})
		return it.ID, err
	}},
	{"gorm FirstOrCreate", func(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
		var it Item
		err := db.WithContext(ctx).Where(Item{Name: name}).FirstOrCreate(&it).Error
		return it.ID, err
	}},
	// With Assign: the row found is updated too, as FirstOrCreate does.
	{"safefind FindOrCreate + Assign", func(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
		var it Item
		_, err := safefind.FindOrCreate(db.WithContext(ctx).Where(Item{Name: name}).Assign(Item{Note: "assigned"}), &it)
		return it.ID, err
	}},
	{"safefind CreateOrFind + Assign", func(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
		var it Item
		_, err := safefind.CreateOrFind(db.WithContext(ctx).Where(Item{Name: name}).Assign(Item{Note: "assigned"}), &it)
		return it.ID, err
	}},
	{"gorm FirstOrCreate + Assign", func(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
		var it Item
		err := db.WithContext(ctx).Where(Item{Name: name}).Assign(Item{Note: "assigned"}).FirstOrCreate(&it).Error
		return it.ID, err
	}},
	{"rails create_or_find_by", railsCreateOrFindBy},
	{"django get_or_create", djangoGetOrCreate},
	{"gitlab safe_find_or_create_by", gitlabSafeFindOrCreateBy},
	{"raw database/sql floor", rawFloor},
}

// atomically runs fn as Rails' transaction(requires_new: true) and Django's
// atomic() do: in a savepoint inside a transaction, in a transaction of
// its own outside one. GORM's Transaction does exactly that (its savepoint
// is rolled back on error, never released, as Rails releases it: so this
// releases it on success, as Rails and Django do).
func atomically(db *gorm.DB, inTx bool, fn func(tx *gorm.DB) error) error {
	if !inTx {
		return db.Transaction(fn)
	}
	const sp = "bench_sp"
	if err := db.Exec("SAVEPOINT " + sp).Error; err != nil {
		return err
	}
	if err := fn(db); err != nil {
		if rerr := db.Exec("ROLLBACK TO SAVEPOINT " + sp).Error; rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return db.Exec("RELEASE SAVEPOINT " + sp).Error
}

// railsCreateOrFindBy is Rails 8's create_or_find_by: the INSERT in a
// savepoint (a transaction outside one); on a unique violation, the row is
// read, with FOR UPDATE inside a transaction.
func railsCreateOrFindBy(ctx context.Context, db *gorm.DB, inTx bool, name string) (uint, error) {
	db = db.WithContext(ctx)
	it := Item{Name: name}
	err := atomically(db, inTx, func(tx *gorm.DB) error { return tx.Create(&it).Error })
	if err == nil || !errors.Is(err, gorm.ErrDuplicatedKey) {
		return it.ID, err
	}
	q := db.Where(Item{Name: name})
	if inTx {
		q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	}
	var found Item
	return found.ID, q.Take(&found).Error
}

// djangoGetOrCreate is Django's get_or_create: a SELECT; on a miss the
// INSERT in atomic() (a savepoint inside a transaction); on an
// IntegrityError, the SELECT again.
func djangoGetOrCreate(ctx context.Context, db *gorm.DB, inTx bool, name string) (uint, error) {
	db = db.WithContext(ctx)
	var it Item
	err := db.Where(Item{Name: name}).Take(&it).Error
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return it.ID, err
	}
	it = Item{Name: name}
	err = atomically(db, inTx, func(tx *gorm.DB) error { return tx.Create(&it).Error })
	if err == nil || !errors.Is(err, gorm.ErrDuplicatedKey) {
		return it.ID, err
	}
	var found Item
	return found.ID, db.Where(Item{Name: name}).Take(&found).Error
}

// gitlabSafeFindOrCreateBy is GitLab's double-checked safe_find_or_create_by:
// find_by; on a miss, a savepoint (a transaction outside one) holding
// find_or_create_by (SELECT, INSERT); on a unique violation, find_by again.
func gitlabSafeFindOrCreateBy(ctx context.Context, db *gorm.DB, inTx bool, name string) (uint, error) {
	db = db.WithContext(ctx)
	var it Item
	err := db.Where(Item{Name: name}).Take(&it).Error
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return it.ID, err
	}
	err = atomically(db, inTx, func(tx *gorm.DB) error {
		it = Item{}
		err := tx.Where(Item{Name: name}).Take(&it).Error
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		it = Item{Name: name}
		return tx.Create(&it).Error
	})
	if err == nil || !errors.Is(err, gorm.ErrDuplicatedKey) {
		return it.ID, err
	}
	var found Item
	return found.ID, db.Where(Item{Name: name}).Take(&found).Error
}

// execer is what the floor needs of a *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rawFloor finds or creates with database/sql alone, in the fewest
// statements each database allows, on the same connection (or
// transaction) GORM would use:
//   - PostgreSQL: one statement on every path, a CTE whose INSERT skips a
//     conflict and whose SELECT returns the existing row; a second plain
//     SELECT only when the conflicting row was committed after the
//     statement's snapshot;
//   - MySQL/MariaDB: one INSERT ... ON DUPLICATE KEY UPDATE id =
//     LAST_INSERT_ID(id), whose LastInsertId is the row's id either way;
//   - SQLite: a SELECT, and on a miss an INSERT ... ON CONFLICT DO NOTHING
//     RETURNING (in-process: statements cost no round trip).
func rawFloor(ctx context.Context, db *gorm.DB, _ bool, name string) (uint, error) {
	ex, ok := db.Statement.ConnPool.(execer)
	if !ok {
		return 0, fmt.Errorf("floor: connection pool %T", db.Statement.ConnPool)
	}
	var id uint
	switch db.Dialector.Name() {
	case "postgres":
		err := ex.QueryRowContext(ctx, `WITH ins AS (
	INSERT INTO bench_items (name, note) VALUES ($1, '') ON CONFLICT (name) DO NOTHING RETURNING id
) SELECT id FROM ins UNION ALL SELECT id FROM bench_items WHERE name = $1 LIMIT 1`, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			err = ex.QueryRowContext(ctx, `SELECT id FROM bench_items WHERE name = $1`, name).Scan(&id)
		}
		return id, err
	case "mysql":
		res, err := ex.ExecContext(ctx, `INSERT INTO bench_items (name, note) VALUES (?, '') ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)`, name)
		if err != nil {
			return 0, err
		}
		n, err := res.LastInsertId()
		return uint(n), err
	default:
		err := ex.QueryRowContext(ctx, `SELECT id FROM bench_items WHERE name = ?`, name).Scan(&id)
		if !errors.Is(err, sql.ErrNoRows) {
			return id, err
		}
		err = ex.QueryRowContext(ctx, `INSERT INTO bench_items (name, note) VALUES (?, '') ON CONFLICT (name) DO NOTHING RETURNING id`, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			err = ex.QueryRowContext(ctx, `SELECT id FROM bench_items WHERE name = ?`, name).Scan(&id)
		}
		return id, err
	}
}
