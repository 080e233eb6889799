package tests

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Statements that GORM derives inside a safefind call are not the call's:
// the queries of a Preload on the lookup, a hook's own queries of the same
// table, and the statements that save a hook's associations. safefind
// knows its own statements by a clause that derived statements do not
// inherit; were one of these taken for the call's INSERT, a row it did not
// insert would have its hooks suppressed.

// Owner's hooks run statements of their own inside safefind's INSERT.
type Owner struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
	Pets []Pet
}

// Pet belongs to a Toy, saved with it as an association.
type Pet struct {
	ID      uint
	OwnerID uint
	Name    string `gorm:"size:64"`
	ToyID   *uint
	Toy     *Toy
}

// Toy counts its AfterCreate hooks.
type Toy struct {
	ID   uint
	Name string `gorm:"size:64"`
}

type (
	toyKey      struct{} // the ID of the toy every new owner's pet gets
	toyHooksKey struct{} // *atomic.Int64: Toy.AfterCreate calls
)

// BeforeCreate queries the owners' table, unfiltered, as a hook may.
func (o *Owner) BeforeCreate(tx *gorm.DB) error {
	var n int64
	if err := tx.Model(&Owner{}).Count(&n).Error; err != nil {
		return err
	}
	return tx.Where("name <> ?", o.Name).Find(&[]Owner{}).Error
}

// AfterCreate gives the owner a pet with an existing toy: GORM saves the
// toy as an association, inserts nothing (its key exists) and runs its
// AfterCreate hook all the same.
func (o *Owner) AfterCreate(tx *gorm.DB) error {
	id, ok := tx.Statement.Context.Value(toyKey{}).(uint)
	if !ok {
		return nil
	}
	return tx.Create(&Pet{OwnerID: o.ID, Name: "pet of " + o.Name, Toy: &Toy{ID: id, Name: "ball"}}).Error
}

func (t *Toy) AfterCreate(tx *gorm.DB) error {
	countInto(tx, toyHooksKey{})
	return nil
}

func TestDerivedStatementsAreNotTheCalls(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Toy{}, &Owner{}, &Pet{})
		ball := Toy{Name: "ball"}
		require.NoError(t, e.other.Create(&ball).Error)
		var toyHooks atomic.Int64
		ctx := context.WithValue(context.WithValue(context.Background(), toyKey{}, ball.ID), toyHooksKey{}, &toyHooks)
		db := e.db.WithContext(ctx)

		var ann Owner
		created, err := safefind.FindOrCreate(db.Preload("Pets"), &ann, Owner{Name: "ann"})
		require.NoError(t, err)
		assert.True(t, created)
		assert.EqualValues(t, 1, toyHooks.Load(), "the toy's AfterCreate ran, as GORM runs it for an association it did not insert")
		assert.EqualValues(t, 1, e.count(t, &Pet{}, "owner_id = ?", ann.ID))
		assert.EqualValues(t, 1, e.count(t, &Toy{}), "the toy was not inserted again")

		for _, o := range ops {
			t.Run(o.name+"/Preload on a hit", func(t *testing.T) {
				var again Owner
				created, err := o.fn(db.Preload("Pets"), &again, Owner{Name: "ann"})
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, ann.ID, again.ID)
				require.Len(t, again.Pets, 1, "the preload's query ran and filled dest")
				assert.Equal(t, "pet of ann", again.Pets[0].Name)
			})
		}
		for _, o := range batchOps {
			t.Run(o.name+"/Preload and hooks", func(t *testing.T) {
				before := toyHooks.Load()
				bob := "bob-" + o.name
				rows := []Owner{{Name: "ann"}, {Name: bob}}
				created, err := o.fn(db.Preload("Pets"), &rows, "name")
				require.NoError(t, err)
				assert.Equal(t, []bool{false, true}, created)
				assert.Equal(t, ann.ID, rows[0].ID)
				assert.EqualValues(t, before+1, toyHooks.Load(), "the toy's AfterCreate ran for the new owner's pet")
				assert.EqualValues(t, 1, e.count(t, &Pet{}, "owner_id = ?", rows[1].ID))
			})
		}
	})
}
