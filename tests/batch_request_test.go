package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// The batch calls honour the chain's Attrs and Assign as FirstOrCreate does
// for each row: GORM is the oracle. The same chain runs through
// FirstOrCreate, element by element, and through the batch call, on the
// same seeded table; the rows stored and the elements returned must agree
// (timestamps aside: a batch's Assign does not rewrite a row it leaves
// unchanged, where FirstOrCreate's Updates moves UpdatedAt).
func TestBatchAttrsAssignParity(t *testing.T) {
	type view struct {
		AliasName string
		ModelID   uint
		IsActive  bool
		Weight    int
	}
	viewOf := func(a Alias) view { return view{a.AliasName, a.ModelID, a.IsActive, a.Weight} }
	chains := []struct {
		name  string
		chain func(*gorm.DB) *gorm.DB
	}{
		{"Attrs struct", func(db *gorm.DB) *gorm.DB { return db.Attrs(Alias{Weight: 42, IsActive: true}) }},
		{"Attrs map", func(db *gorm.DB) *gorm.DB { return db.Attrs(map[string]any{"weight": 43}) }},
		{"Assign struct", func(db *gorm.DB) *gorm.DB { return db.Assign(Alias{IsActive: true}) }},
		{"Assign map", func(db *gorm.DB) *gorm.DB { return db.Assign(map[string]any{"weight": 11, "is_active": true}) }},
		{"Attrs and Assign", func(db *gorm.DB) *gorm.DB { return db.Attrs(Alias{Weight: 5}).Assign(Alias{IsActive: true}) }},
		{"Where, Assign column", func(db *gorm.DB) *gorm.DB {
			return db.Where("model_id = ?", 5).Assign("weight", 12)
		}},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		seed := func() {
			e.reset(t, &Alias{})
			require.NoError(t, e.other.Create(&[]Alias{
				{AliasName: "b", ModelID: 5, Weight: 1},
				{AliasName: "d", ModelID: 5, IsActive: true, Weight: 2},
			}).Error)
		}
		elements := func() []Alias {
			return []Alias{{AliasName: "d", ModelID: 5}, {AliasName: "a", ModelID: 5, Weight: 3}, {AliasName: "b", ModelID: 5}, {AliasName: "c", ModelID: 5}}
		}
		stored := func() map[string]view {
			out := map[string]view{}
			for k, a := range storedAliases(t, e.other) {
				out[k] = viewOf(a)
			}
			return out
		}
		for _, ch := range chains {
			for _, o := range batchOps {
				t.Run(ch.name+"/"+o.name, func(t *testing.T) {
					seed()
					oracle := elements()
					gormDB := e.other.Session(&gorm.Session{})
					for i := range oracle {
						require.NoError(t, ch.chain(gormDB).FirstOrCreate(&oracle[i], Alias{AliasName: oracle[i].AliasName}).Error)
					}
					want := stored()

					seed()
					rows := elements()
					created, err := o.fn(ch.chain(e.db), &rows, "alias_name")
					require.NoError(t, err)
					assert.Equal(t, []bool{false, true, false, true}, created)
					assert.Equal(t, want, stored(), "the rows stored")
					for i := range rows {
						assert.Equal(t, viewOf(oracle[i]), viewOf(rows[i]), "element %d", i)
						assert.Equal(t, storedAliases(t, e.other)[rows[i].AliasName].ID, rows[i].ID, "element %d", i)
					}
				})
			}
		}
	})
}

// What FirstOrCreate would do otherwise than a batch can, a batch refuses
// before anything is written.
func TestBatchAttrsAssignRefused(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{}, &Account{})
		require.NoError(t, e.other.Create(&Alias{AliasName: "kept", ModelID: 1}).Error)
		cases := []struct {
			name  string
			chain func(*gorm.DB) *gorm.DB
			want  error
		}{
			{"Attrs on the key", func(db *gorm.DB) *gorm.DB { return db.Attrs(Alias{AliasName: "x"}) }, safefind.ErrInvalidAttributes},
			{"Assign on the key", func(db *gorm.DB) *gorm.DB { return db.Assign(map[string]any{"alias_name": "x"}) }, safefind.ErrInvalidAttributes},
			{"Assign of an expression", func(db *gorm.DB) *gorm.DB {
				return db.Assign(map[string]any{"weight": gorm.Expr("weight + 1")})
			}, safefind.ErrInvalidAttributes},
			{"Assign with a range condition", func(db *gorm.DB) *gorm.DB {
				return db.Where("weight > ?", 0).Assign(Alias{IsActive: true})
			}, safefind.ErrUnsupportedCondition},
			{"Assign of an unknown column", func(db *gorm.DB) *gorm.DB { return db.Assign(map[string]any{"nope": 1}) }, safefind.ErrUnknownColumn},
		}
		for _, tc := range cases {
			for _, o := range batchOps {
				t.Run(tc.name+"/"+o.name, func(t *testing.T) {
					rows := []Alias{{AliasName: "kept", ModelID: 2}, {AliasName: "new"}}
					db, r := e.recorded(e.db)
					_, err := o.fn(tc.chain(db), &rows, "alias_name")
					require.ErrorIs(t, err, tc.want)
					t.Log(err)
					for _, s := range r.Statements() {
						assert.NotRegexp(t, `^(INSERT|UPDATE|DELETE)`, s)
					}
					assert.Len(t, storedAliases(t, e.other), 1)
				})
			}
		}
	})
}

// A batch with Assign is an upsert of Assign's columns: concurrent batches
// with overlapping keys, each assigning its own value, in transactions.
// Every key ends with one row, holding one caller's value; every element
// holds its stored row.
func TestBatchAssignConcurrent(t *testing.T) {
	const (
		workers = 4
		keys    = 200
		rounds  = 5
	)
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		for round := range rounds {
			results := make([][]Alias, workers)
			release(workers, func(w int) {
				rows := make([]Alias, keys)
				for i := range rows {
					rows[i] = Alias{AliasName: fmt.Sprintf("r%d-%04d", round, (w*keys/2+i*7)%(keys*2))}
				}
				o := batchOps[w%2]
				err := e.db.Transaction(func(tx *gorm.DB) error {
					_, err := o.fn(tx.Assign(Alias{Weight: 100 + w, UpdatedAt: time.Time{}}), &rows, "alias_name")
					return err
				})
				assert.NoError(t, err)
				results[w] = rows
			})
			stored := storedAliases(t, e.other)
			for w, rows := range results {
				for i, row := range rows {
					s := stored[row.AliasName]
					require.Equal(t, s.ID, row.ID, "worker %d element %d", w, i)
					require.GreaterOrEqual(t, s.Weight, 100)
				}
			}
		}
	})
}
