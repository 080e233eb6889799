package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
)

// Alias is what teams upsert in batches: an alias name, unique, pointing
// at a model, with GORM's timestamps and a database default.
type Alias struct {
	ID        uint
	AliasName string `gorm:"size:64;uniqueIndex"`
	ModelID   uint   `gorm:"index"`
	IsActive  bool
	Weight    int       `gorm:"default:7"`
	CreatedAt time.Time `gorm:"precision:3"`
	UpdatedAt time.Time `gorm:"precision:3"`
}

// stored reads every alias, by name.
func storedAliases(t testing.TB, db *gorm.DB) map[string]Alias {
	t.Helper()
	var all []Alias
	require.NoError(t, db.Order("alias_name").Find(&all).Error)
	out := make(map[string]Alias, len(all))
	for _, a := range all {
		out[a.AliasName] = a
	}
	return out
}

func TestUpsertAll(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		seed := []Alias{
			{AliasName: "b", ModelID: 1, IsActive: true, Weight: 1, CreatedAt: past, UpdatedAt: past},
			{AliasName: "d", ModelID: 1, IsActive: true, Weight: 2, CreatedAt: past, UpdatedAt: past},
		}
		require.NoError(t, e.other.Create(&seed).Error)

		rows := []Alias{
			{AliasName: "d", ModelID: 1, IsActive: true}, // unchanged
			{AliasName: "a", ModelID: 2, IsActive: true}, // new
			{AliasName: "b", ModelID: 2, IsActive: true}, // moved to model 2
			{AliasName: "c", ModelID: 2},                 // new
		}
		db, r := e.recorded(e.db)
		created, err := safefind.UpsertAll(db, &rows, []string{"alias_name"}, "model_id", "is_active")
		require.NoError(t, err)
		assert.Equal(t, []bool{false, true, false, true}, created)
		assert.Zero(t, r.Savepoints())
		t.Logf("statements: %q", abbreviate(r.Statements()))

		stored := storedAliases(t, e.other)
		require.Len(t, stored, 4)
		for i, row := range rows {
			s := stored[row.AliasName]
			assert.Equal(t, s.ID, row.ID, "element %d holds its stored row's id", i)
			assert.Equal(t, s.ModelID, row.ModelID, "element %d", i)
			assert.Equal(t, s.Weight, row.Weight, "element %d holds the stored weight", i)
		}
		assert.EqualValues(t, 2, stored["b"].ModelID, "updated")
		assert.Equal(t, 1, stored["b"].Weight, "a column not named is not updated")
		assert.True(t, stored["b"].UpdatedAt.After(past), "UpdatedAt moves with a change")
		assert.True(t, stored["d"].UpdatedAt.Equal(past), "UpdatedAt stays on an unchanged row: %v", stored["d"].UpdatedAt)
		assert.True(t, stored["b"].CreatedAt.Equal(past), "CreatedAt stays")
		assert.Equal(t, 7, stored["a"].Weight, "the database's default")

		// Again, the same values: nothing created, nothing moved.
		again := []Alias{{AliasName: "a", ModelID: 2, IsActive: true}, {AliasName: "b", ModelID: 2, IsActive: true}}
		created, err = safefind.UpsertAll(e.db, &again, []string{"AliasName"}, "ModelID", "IsActive")
		require.NoError(t, err)
		assert.Equal(t, []bool{false, false}, created)
		assert.Equal(t, stored["a"].ID, again[0].ID)
		assert.True(t, storedAliases(t, e.other)["a"].UpdatedAt.Equal(stored["a"].UpdatedAt))
	})
}

func TestUpsertAllDefaultColumns(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		require.NoError(t, e.other.Create(&Alias{AliasName: "x", ModelID: 1, Weight: 1}).Error)
		rows := []Alias{{AliasName: "x", ModelID: 5, IsActive: true, Weight: 9}}
		created, err := safefind.UpsertAll(e.db, &rows, []string{"alias_name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false}, created)
		s := storedAliases(t, e.other)["x"]
		assert.Equal(t, Alias{ID: s.ID, AliasName: "x", ModelID: 5, IsActive: true, Weight: 9}, Alias{ID: s.ID, AliasName: s.AliasName, ModelID: s.ModelID, IsActive: s.IsActive, Weight: s.Weight})
	})
}

func TestUpsertAllChunks(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		db, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: e.db.Logger})
		require.NoError(t, err)
		require.NoError(t, db.Use(safefind.New(safefind.WithChunkSize(100))))
		var seed []Alias
		for i := range 250 {
			seed = append(seed, Alias{AliasName: fmt.Sprintf("k%04d", i*4), ModelID: uint(1 + i%2)}) // half unchanged
		}
		require.NoError(t, e.other.CreateInBatches(&seed, 100).Error)
		rows := make([]Alias, 1000)
		for i := range rows {
			rows[i] = Alias{AliasName: fmt.Sprintf("k%04d", 999-i), ModelID: uint(1 + i%2)}
		}
		ctxdb, r := e.recorded(db)
		created, err := safefind.UpsertAll(ctxdb, &rows, []string{"alias_name"}, "model_id")
		require.NoError(t, err)
		n := 0
		for _, c := range created {
			if c {
				n++
			}
		}
		assert.Equal(t, 750, n)
		stored := storedAliases(t, e.other)
		assert.Len(t, stored, 1000)
		for i, row := range rows {
			require.Equal(t, stored[row.AliasName].ID, row.ID, "element %d", i)
			require.Equal(t, stored[row.AliasName].ModelID, row.ModelID, "element %d", i)
		}
		// Counted at the driver, per chunk of 100: one upsert, and a read
		// of the rows it left as they were (PostgreSQL, SQLite), which
		// MariaDB's RETURNING returns; on SQLite, which has one writer at a
		// time, a read of the ids that exist comes first too, after a
		// DELETE of no row that takes the write lock for the transaction.
		// Per call: a transaction of its own, so that a row the upsert may
		// not update leaves nothing behind; PostgreSQL reads the table's
		// kind once (cached).
		kinds := map[string]int{}
		for _, s := range r.Statements() {
			kinds[strings.Fields(s)[0]]++
		}
		want := map[string]map[string]int{
			"postgres": {"BEGIN": 1, "INSERT": 10, "SELECT": 11, "COMMIT": 1},
			"mysql":    {"BEGIN": 1, "INSERT": 10, "COMMIT": 1},
			"sqlite":   {"BEGIN": 1, "DELETE": 1, "SELECT": 20, "INSERT": 10, "COMMIT": 1},
		}
		assert.Equal(t, want[e.name], kinds, "%q", abbreviate(r.Statements()))
		assert.Zero(t, r.Savepoints())
	})
}

func TestUpsertAllBadInput(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		require.NoError(t, e.other.Create(&Alias{AliasName: "kept", ModelID: 1}).Error)
		rows := func() []Alias {
			return []Alias{{AliasName: "kept", ModelID: 2}, {AliasName: "new", ModelID: 2}}
		}
		cases := []struct {
			name string
			keys []string
			cols []string
			db   func(*gorm.DB) *gorm.DB
			rows []Alias
			want error
		}{
			{"no key", nil, []string{"model_id"}, nil, nil, safefind.ErrNoConditions},
			{"unknown key", []string{"nope"}, nil, nil, nil, safefind.ErrUnknownColumn},
			{"key not unique", []string{"model_id"}, []string{"is_active"}, nil, nil, safefind.ErrKeyNotUnique},
			{"unknown column", []string{"alias_name"}, []string{"model_id", "nope"}, nil, nil, safefind.ErrUnknownColumn},
			{"SQL as a column", []string{"alias_name"}, []string{"model_id = 1; DROP TABLE aliases; --"}, nil, nil, safefind.ErrUnknownColumn},
			{"key column", []string{"alias_name"}, []string{"model_id", "AliasName"}, nil, nil, safefind.ErrInvalidColumns},
			{"primary key", []string{"alias_name"}, []string{"id"}, nil, nil, safefind.ErrInvalidColumns},
			{"duplicates that differ", []string{"alias_name"}, nil, nil,
				[]Alias{{AliasName: "x", ModelID: 1}, {AliasName: "y"}, {AliasName: "x", ModelID: 2}}, safefind.ErrConflictingDuplicates},
			{"Assign", []string{"alias_name"}, nil, func(db *gorm.DB) *gorm.DB { return db.Assign(Alias{IsActive: true}) }, nil, safefind.ErrInvalidAttributes},
			{"not an equality", []string{"alias_name"}, nil, func(db *gorm.DB) *gorm.DB { return db.Where("model_id > ?", 0) }, nil, safefind.ErrUnsupportedCondition},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.rows
				if in == nil {
					in = rows()
				}
				db, r := e.recorded(e.db)
				if tc.db != nil {
					db = tc.db(db) // after WithContext, which drops Assign
				}
				before := append([]Alias(nil), in...)
				created, err := safefind.UpsertAll(db, &in, tc.keys, tc.cols...)
				require.ErrorIs(t, err, tc.want)
				t.Log(err)
				assert.Nil(t, created)
				assert.Equal(t, before, in, "the rows are left as they were")
				for _, s := range r.Statements() {
					assert.NotRegexp(t, `^(INSERT|UPDATE|DELETE)`, s, "nothing is written")
				}
				stored := storedAliases(t, e.other)
				assert.Len(t, stored, 1)
				assert.EqualValues(t, 1, stored["kept"].ModelID)
			})
		}
		for _, col := range []string{"label", "Origin"} {
			t.Run("not updatable: "+col, func(t *testing.T) {
				in := []LabeledAlias{{AliasName: "kept", ModelID: 2}}
				_, err := safefind.UpsertAll(e.db, &in, []string{"alias_name"}, "model_id", col)
				require.ErrorIs(t, err, safefind.ErrInvalidColumns)
				t.Log(err)
				assert.EqualValues(t, 1, storedAliases(t, e.other)["kept"].ModelID)
			})
		}
	})
}

// LabeledAlias has a read-only and a create-only column.
type LabeledAlias struct {
	ID        uint
	AliasName string `gorm:"size:64;uniqueIndex"`
	ModelID   uint
	Label     string `gorm:"->;size:64"`
	Origin    string `gorm:"<-:create;size:64"`
}

func (LabeledAlias) TableName() string { return "aliases" }

func TestUpsertAllDuplicateElements(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		rows := []Alias{{AliasName: "x", ModelID: 1}, {AliasName: "y", ModelID: 1}, {AliasName: "x", ModelID: 1}}
		created, err := safefind.UpsertAll(e.db, &rows, []string{"alias_name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{true, true, false}, created, "identical duplicates share one row, created once")
		assert.NotZero(t, rows[0].ID)
		assert.Equal(t, rows[0].ID, rows[2].ID)
		assert.Len(t, storedAliases(t, e.other), 2)
	})
}

// MySQL 8 has no RETURNING: the listed path, run here on MariaDB with
// GORM's RETURNING turned off.
func TestUpsertAllWithoutReturning(t *testing.T) {
	e := open(t, "mysql")
	e.reset(t, &Alias{})
	db, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: e.sqlDB, DisableWithReturning: true}), &gorm.Config{Logger: e.db.Logger})
	require.NoError(t, err)
	require.NoError(t, db.Use(safefind.New()))
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, e.other.Create(&[]Alias{
		{AliasName: "b", ModelID: 1, UpdatedAt: past},
		{AliasName: "d", ModelID: 2, UpdatedAt: past},
	}).Error)
	for _, inTx := range []bool{false, true} {
		rows := []Alias{{AliasName: "d", ModelID: 2}, {AliasName: "a", ModelID: 2}, {AliasName: "b", ModelID: 2}, {AliasName: fmt.Sprint("c", inTx), ModelID: 2}}
		ctxdb, r := e.recorded(db)
		var created []bool
		if inTx {
			err = ctxdb.Transaction(func(tx *gorm.DB) error {
				created, err = safefind.UpsertAll(tx, &rows, []string{"alias_name"}, "model_id")
				return err
			})
		} else {
			created, err = safefind.UpsertAll(ctxdb, &rows, []string{"alias_name"}, "model_id")
		}
		require.NoError(t, err)
		t.Logf("statements: %q", abbreviate(r.Statements()))
		for _, s := range r.Statements() {
			assert.NotContains(t, s, "RETURNING")
		}
		if inTx {
			assert.Equal(t, []bool{false, false, false, true}, created)
		} else {
			assert.Equal(t, []bool{false, true, false, true}, created)
		}
		stored := storedAliases(t, e.other)
		for i, row := range rows {
			assert.Equal(t, stored[row.AliasName].ID, row.ID, "element %d", i)
			assert.EqualValues(t, 2, stored[row.AliasName].ModelID)
		}
		assert.True(t, stored["d"].UpdatedAt.Equal(past), "unchanged: %v", stored["d"])
		assert.Zero(t, r.Savepoints())
	}
}

// KeyOnly has no column to update but its key.
type KeyOnly struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
}

// Shouting upper-cases its Note before every INSERT.
type Shouting struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
	Note string `gorm:"size:64"`
}

func (s *Shouting) BeforeCreate(*gorm.DB) error {
	s.Note = strings.ToUpper(s.Note)
	return nil
}

// With no column to update UpsertAll is a find-or-create; a BeforeCreate
// hook's changes reach the rows updated as well as those inserted, as with
// GORM's Create and OnConflict.
func TestUpsertAllKeyOnlyAndHooks(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &KeyOnly{}, &Shouting{})
		require.NoError(t, e.other.Create(&KeyOnly{Name: "b"}).Error)
		keys := []KeyOnly{{Name: "b"}, {Name: "a"}}
		created, err := safefind.UpsertAll(e.db, &keys, []string{"name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, true}, created)
		assert.EqualValues(t, 1, keys[0].ID)

		require.NoError(t, e.other.Create(&Shouting{Name: "b", Note: "old"}).Error)
		rows := []Shouting{{Name: "b", Note: "new"}, {Name: "a", Note: "fresh"}}
		created, err = safefind.UpsertAll(e.db, &rows, []string{"name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, true}, created)
		var stored []Shouting
		require.NoError(t, e.other.Order("name").Find(&stored).Error)
		require.Len(t, stored, 2)
		assert.Equal(t, "FRESH", stored[0].Note)
		assert.Equal(t, "NEW", stored[1].Note)
		assert.Equal(t, "NEW", rows[0].Note)
	})
}

// The chain's equalities are set on every row inserted, and a row that has
// the key but not the chain's values is not the lookup's: it is left as it
// was, and the call fails.
func TestUpsertAllChainEqualities(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		require.NoError(t, e.other.Create(&[]Alias{{AliasName: "mine", ModelID: 5}, {AliasName: "theirs", ModelID: 6, Weight: 1}}).Error)
		rows := []Alias{{AliasName: "new", Weight: 2}, {AliasName: "mine", Weight: 3}}
		created, err := safefind.UpsertAll(e.db.Where("model_id = ?", 5), &rows, []string{"alias_name"}, "weight")
		require.NoError(t, err)
		assert.Equal(t, []bool{true, false}, created)
		stored := storedAliases(t, e.other)
		assert.EqualValues(t, 5, stored["new"].ModelID, "the chain's equality is set on the row inserted")
		assert.Equal(t, 3, stored["mine"].Weight)
		assert.EqualValues(t, 5, rows[0].ModelID)

		rows = []Alias{{AliasName: "theirs", Weight: 9}}
		_, err = safefind.UpsertAll(e.db.Where("model_id = ?", 5), &rows, []string{"alias_name"}, "weight")
		require.ErrorIs(t, err, safefind.ErrConflictNotFound)
		assert.Equal(t, 1, storedAliases(t, e.other)["theirs"].Weight, "left as it was")
	})
}
