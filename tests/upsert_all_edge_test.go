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

// Pair has a composite key of strings that may hold the separators of
// MariaDB's marks (':' and ',').
type Pair struct {
	ID    uint
	A     string `gorm:"size:32;uniqueIndex:idx_pair"`
	B     string `gorm:"size:32;uniqueIndex:idx_pair"`
	Value int
}

// Coded has a string primary key, its only key.
type Coded struct {
	Code  string `gorm:"primaryKey;size:32"`
	Value int
}

// Marks tell rows apart whatever their keys hold, with RETURNING and without
// (MySQL 8's listed path, run on MariaDB with GORM's RETURNING off).
func TestUpsertAllKeysWithSeparators(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		dbs := map[string]*gorm.DB{"": e.db}
		if e.name == "mysql" {
			listed, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: e.sqlDB, DisableWithReturning: true}), &gorm.Config{Logger: e.db.Logger})
			require.NoError(t, err)
			require.NoError(t, listed.Use(safefind.New()))
			dbs["without RETURNING"] = listed
		}
		for name, db := range dbs {
			t.Run(name, func(t *testing.T) {
				e.reset(t, &Pair{}, &Coded{})
				require.NoError(t, e.other.Create(&Pair{A: "a", B: "b:c", Value: 1}).Error)
				rows := []Pair{{A: "a", B: "b:c", Value: 2}, {A: "a:b", B: "c", Value: 3}, {A: "a", B: "b,c", Value: 4}}
				created, err := safefind.UpsertAll(db, &rows, []string{"a", "b"}, "value")
				require.NoError(t, err)
				assert.Equal(t, []bool{false, true, true}, created)

				pairs := []Pair{{A: "a:b", B: "c"}, {A: "x", B: "y:z"}}
				created, err = safefind.CreateOrFindAll(db, &pairs, "a", "b")
				require.NoError(t, err)
				assert.Equal(t, []bool{false, true}, created)
				assert.Equal(t, rows[1].ID, pairs[0].ID)

				require.NoError(t, e.other.Create(&Coded{Code: "k,1", Value: 1}).Error)
				codes := []Coded{{Code: "k,1", Value: 2}, {Code: "k", Value: 3}, {Code: "k,1,"}}
				created, err = safefind.UpsertAll(db, &codes, []string{"code"}, "value")
				require.NoError(t, err)
				assert.Equal(t, []bool{false, true, true}, created)
				var stored []Coded
				require.NoError(t, e.other.Order("code").Find(&stored).Error)
				assert.Equal(t, []Coded{{"k", 3}, {"k,1", 2}, {"k,1,", 0}}, stored)
			})
		}
	})
}

// A column the chain's Select or Omit leave out of the INSERT has no value
// to update a row with: UpsertAll refuses to name it; Assign leaves it out,
// as FirstOrCreate's Create and Updates do.
func TestUpsertAllOmittedColumns(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		require.NoError(t, e.other.Create(&Alias{AliasName: "x", ModelID: 1, Weight: 1}).Error)
		rows := []Alias{{AliasName: "x", Weight: 9}}
		_, err := safefind.UpsertAll(e.db.Omit("weight"), &rows, []string{"alias_name"}, "weight")
		require.ErrorIs(t, err, safefind.ErrInvalidColumns)
		_, err = safefind.UpsertAll(e.db.Select("alias_name", "model_id"), &rows, []string{"alias_name"}, "weight")
		require.ErrorIs(t, err, safefind.ErrInvalidColumns)

		created, err := safefind.UpsertAll(e.db.Omit("weight"), &rows, []string{"alias_name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false}, created)
		assert.Equal(t, 1, storedAliases(t, e.other)["x"].Weight, "an omitted column is not among the default ones")

		oracle := Alias{AliasName: "x"}
		require.NoError(t, e.other.Omit("weight").Assign(Alias{Weight: 11, IsActive: true}).FirstOrCreate(&oracle, Alias{AliasName: "x"}).Error)
		want := storedAliases(t, e.other)["x"]
		require.NoError(t, e.other.Model(&Alias{}).Where("alias_name = ?", "x").Updates(map[string]any{"weight": 1, "is_active": false}).Error)
		for _, o := range batchOps {
			rows := []Alias{{AliasName: "x"}}
			_, err := o.fn(e.db.Omit("weight").Assign(Alias{Weight: 11, IsActive: true}), &rows, "alias_name")
			require.NoError(t, err)
			got := storedAliases(t, e.other)["x"]
			assert.Equal(t, want.Weight, got.Weight, o.name)
			assert.Equal(t, want.IsActive, got.IsActive, o.name)
		}
	})
}

// A call that fails once its statement ran (a row it may not update)
// leaves nothing behind, in a transaction of its own, model hooks or not.
func TestUpsertAllFailureWritesNothing(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		require.NoError(t, e.other.Create(&Alias{AliasName: "theirs", ModelID: 6, Weight: 1}).Error)
		rows := []Alias{{AliasName: "theirs", Weight: 9}, {AliasName: "zz-new", Weight: 2}}
		_, err := safefind.UpsertAll(e.db.Where("model_id = ?", 5), &rows, []string{"alias_name"}, "weight")
		require.ErrorIs(t, err, safefind.ErrConflictNotFound)
		stored := storedAliases(t, e.other)
		assert.Len(t, stored, 1, "zz-new is not left behind")
		assert.Equal(t, 1, stored["theirs"].Weight)
	})
}

// Keys the database compares otherwise than Go: MariaDB's case-insensitive
// collation finds "go" for "Go"; a time finer than the column is stored cut.
// The upsert settles them by the database's comparison.
func TestUpsertAllKeysComparedByTheDatabase(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{}, &Happening{})
		if e.name == "mysql" {
			require.NoError(t, e.other.Create(&Alias{AliasName: "go", ModelID: 1}).Error)
			rows := []Alias{{AliasName: "Go", ModelID: 3}, {AliasName: "sql", ModelID: 3}}
			created, err := safefind.UpsertAll(e.db, &rows, []string{"alias_name"}, "model_id")
			require.NoError(t, err)
			assert.Equal(t, []bool{false, true}, created)
			assert.Equal(t, "go", rows[0].AliasName, "the stored row")
			assert.EqualValues(t, 3, storedAliases(t, e.other)["go"].ModelID)
		}
		if e.name == "mysql" {
			return // MySQL rounds a finer time on the way in, and no lookup finds it (docs/limits.md)
		}
		at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
		rows := []Happening{{At: at, Name: "new"}}
		created, err := safefind.UpsertAll(e.db, &rows, []string{"at"}, "name")
		require.NoError(t, err)
		assert.Equal(t, []bool{true}, created)
		var n int64
		require.NoError(t, e.other.Model(&Happening{}).Count(&n).Error)
		assert.EqualValues(t, 1, n)
	})
}

// Happening is keyed by a time.
type Happening struct {
	ID   uint
	At   time.Time `gorm:"uniqueIndex"`
	Name string    `gorm:"size:32"`
}

// PostgreSQL's json has no equality operator: compared as jsonb.
func TestUpsertAllJSON(t *testing.T) {
	type Doc struct {
		ID   uint
		Name string `gorm:"size:32;uniqueIndex"`
		Body string `gorm:"type:json"`
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Doc{})
		require.NoError(t, e.other.Create(&Doc{Name: "a", Body: `{"x": 1}`}).Error)
		rows := []Doc{{Name: "a", Body: `{"x": 2}`}, {Name: "b", Body: `{}`}}
		created, err := safefind.UpsertAll(e.db, &rows, []string{"name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, true}, created)
		var got Doc
		require.NoError(t, e.other.Where("name = ?", "a").First(&got).Error)
		assert.JSONEq(t, `{"x": 2}`, got.Body)
	})
}

// A batch with Assign takes duplicate keys as FindOrCreateAll does: the
// first element of a key is the one inserted.
func TestBatchAssignDuplicates(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		rows := []Alias{{AliasName: "a", ModelID: 1}, {AliasName: "a", ModelID: 2}}
		created, err := safefind.FindOrCreateAll(e.db.Assign(Alias{IsActive: true}), &rows, "alias_name")
		require.NoError(t, err)
		assert.Equal(t, []bool{true, false}, created)
		assert.EqualValues(t, 1, rows[1].ModelID)
		assert.True(t, rows[1].IsActive)
	})
}

// A change of case is a change, whatever the collation: UpdatedAt moves.
func TestUpsertAllChangeOfCase(t *testing.T) {
	type Titled struct {
		ID        uint
		Name      string `gorm:"size:32;uniqueIndex"`
		Title     string `gorm:"size:32"`
		UpdatedAt time.Time
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Titled{})
		past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		require.NoError(t, e.other.Create(&Titled{Name: "a", Title: "hello", UpdatedAt: past}).Error)
		rows := []Titled{{Name: "a", Title: "Hello"}}
		_, err := safefind.UpsertAll(e.db, &rows, []string{"name"})
		require.NoError(t, err)
		var got Titled
		require.NoError(t, e.other.First(&got).Error)
		assert.Equal(t, "Hello", got.Title)
		assert.True(t, got.UpdatedAt.After(past), "UpdatedAt moved: %v", got.UpdatedAt)
	})
}

// Unscoped with the default columns does not bring a deleted row back:
// the soft-delete column is not among them.
func TestUpsertAllUnscopedKeepsDeleted(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Account{})
		require.NoError(t, e.other.Create(&Account{Email: "gone@x", Plan: "free"}).Error)
		require.NoError(t, e.other.Where("email = ?", "gone@x").Delete(&Account{}).Error)
		rows := []Account{{Email: "gone@x", Plan: "pro"}}
		_, err := safefind.UpsertAll(e.db.Unscoped(), &rows, []string{"email"})
		require.NoError(t, err)
		var got Account
		require.NoError(t, e.other.Unscoped().First(&got).Error)
		assert.Equal(t, "pro", got.Plan)
		assert.True(t, got.DeletedAt.Valid, "still deleted")
	})
}

// An empty slice sends nothing, but its arguments are checked.
func TestUpsertAllEmpty(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Alias{})
		db, r := e.recorded(e.db)
		created, err := safefind.UpsertAll(db, &[]Alias{}, []string{"alias_name"}, "model_id")
		require.NoError(t, err)
		assert.Empty(t, created)
		_, err = safefind.UpsertAll(db, &[]Alias{}, []string{"alias_name"}, "bogus")
		require.ErrorIs(t, err, safefind.ErrUnknownColumn)
		_, err = safefind.UpsertAll(db, &[]Alias{}, []string{"bogus"})
		require.ErrorIs(t, err, safefind.ErrUnknownColumn)
		assert.Empty(t, r.Statements(), "nothing sent")
	})
}

// The bind-parameter limit counts the conflict clause's parameters too:
// the chain's equality, in every guard.
func TestUpsertAllParameterLimit(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite's limit is not reached by this many rows")
		}
		e.reset(t, &Tag{})
		db, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: e.db.Logger})
		require.NoError(t, err)
		require.NoError(t, db.Use(safefind.New(safefind.WithChunkSize(100_000))))
		n := 65535 / 3
		rows := make([]Tag, n)
		for i := range rows {
			rows[i] = Tag{Name: fmt.Sprintf("p%06d", i)}
		}
		created, err := safefind.UpsertAll(db.Where("note = ?", "n"), &rows, []string{"name"})
		require.NoError(t, err)
		assert.Len(t, created, n)
		assert.True(t, strings.HasPrefix(rows[n-1].Note, "n"))
	})
}

// Keyless has no primary key: rows are told apart by their key.
type Keyless struct {
	Name  string `gorm:"size:32;uniqueIndex"`
	Value int
}

func TestUpsertAllWithoutPrimaryKey(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Keyless{})
		require.NoError(t, e.other.Create(&Keyless{Name: "b", Value: 1}).Error)
		rows := []Keyless{{Name: "b", Value: 2}, {Name: "a", Value: 3}, {Name: "c", Value: 4}}
		created, err := safefind.UpsertAll(e.db, &rows, []string{"name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, true, true}, created)
		var stored []Keyless
		require.NoError(t, e.other.Order("name").Find(&stored).Error)
		assert.Equal(t, []Keyless{{"a", 3}, {"b", 2}, {"c", 4}}, stored)
	})
}

// A PostgreSQL partitioned table cannot return xmax: UpsertAll takes two
// statements there, created exact.
func TestUpsertAllPartitionedTable(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name != "postgres" {
			t.Skip("partitioned tables are PostgreSQL's")
		}
		createParts(t, e)
		require.NoError(t, e.other.Create(&[]Part{{Name: "b", Note: "old"}, {Name: "c", Note: "same"}}).Error)
		rows := []Part{{Name: "c", Note: "same"}, {Name: "a", Note: "new"}, {Name: "b", Note: "changed"}}
		db, r := e.recorded(e.db)
		created, err := safefind.UpsertAll(db, &rows, []string{"name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, true, false}, created)
		var stored []Part
		require.NoError(t, e.other.Order("name").Find(&stored).Error)
		assert.Equal(t, []Part{{"a", "new"}, {"b", "changed"}, {"c", "same"}}, stored)
		t.Logf("%q", abbreviate(r.Statements()))
	})
}
