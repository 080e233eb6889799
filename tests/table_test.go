package tests

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Table(...) sends the lookup and the INSERT to that table.
func TestExplicitTable(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		require.NoError(t, e.other.Migrator().DropTable("archived_tags"))
		require.NoError(t, e.other.Table("archived_tags").AutoMigrate(&Tag{}))
		for _, o := range ops {
			var tag Tag
			created, err := o.fn(e.db.Table("archived_tags"), &tag, Tag{Name: o.name})
			require.NoError(t, err)
			assert.True(t, created)
			created, err = o.fn(e.db.Table("archived_tags"), &Tag{}, Tag{Name: o.name})
			require.NoError(t, err)
			assert.False(t, created)
		}
		var n int64
		require.NoError(t, e.other.Table("archived_tags").Count(&n).Error)
		assert.EqualValues(t, 2, n)
		assert.EqualValues(t, 0, e.count(t, &Tag{}), "nothing went to the model's own table")
	})
}

// An INSERT that fails for another reason than a conflict returns the
// database's error, and on PostgreSQL the savepoint keeps the caller's
// transaction usable.
func TestInsertFailureKeepsTransaction(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		for _, o := range ops {
			err := e.db.Transaction(func(tx *gorm.DB) error {
				// 65 characters into a varchar(64) column: an error on
				// PostgreSQL and strict MySQL; SQLite does not check lengths.
				tag := Tag{Note: fmt.Sprintf("%065d", 0)}
				_, err := o.fn(tx, &tag, Tag{Name: "long-" + o.name})
				if e.name == "sqlite" {
					require.NoError(t, err)
				} else {
					require.Error(t, err)
				}
				return tx.Create(&Tag{Name: "after-" + o.name}).Error
			})
			if e.name == "postgres" && o.name == "CreateOrFind" {
				// No savepoint: the failed INSERT aborted the transaction.
				require.Error(t, err)
				continue
			}
			require.NoError(t, err, o.name)
			assert.EqualValues(t, 1, e.count(t, &Tag{}, "name = ?", "after-"+o.name), o.name)
		}
	})
}

// Prepared-statement sessions: the savepoint is rolled back and released in
// two statements (a prepared statement holds one), and all still works.
func TestPreparedStatements(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		db := e.db.Session(&gorm.Session{PrepareStmt: true})
		for _, o := range ops {
			for _, inTx := range []bool{false, true} {
				key := fmt.Sprintf("%s-%v", o.name, inTx)
				winner := withInject(context.Background(), func() {
					require.NoError(t, e.other.Create(&Tag{Name: key}).Error)
				})
				run := func(tx *gorm.DB) error {
					created, err := o.fn(tx, &Tag{}, Tag{Name: "new-" + key})
					require.True(t, created)
					if err != nil || (inTx && e.name == "sqlite") {
						return err
					}
					created, err = o.fn(tx.WithContext(winner), &Tag{}, Tag{Name: key})
					assert.False(t, created)
					return err
				}
				if inTx {
					require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
						if err := run(tx); err != nil {
							return err
						}
						return tx.Create(&Tag{Name: "after-" + key}).Error
					}))
				} else {
					require.NoError(t, run(db))
				}
			}
		}
	})
}
