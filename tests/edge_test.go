package tests

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"log"
	"strings"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// UID is a fixed-size byte array stored through driver.Valuer, like a UUID
// type: one value, not a list.
type UID [4]byte

func (u UID) Value() (driver.Value, error) { return hex.EncodeToString(u[:]), nil }

func (u *UID) Scan(v any) error {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("UID: cannot scan %T", v)
	}
	_, err := hex.Decode(u[:], []byte(s))
	return err
}

func (UID) GormDataType() string { return "varchar(8)" }

type Item struct {
	ID   uint
	UID  UID    `gorm:"uniqueIndex"`
	Slug string `gorm:"size:32;->"` // read-only
	Name string `gorm:"size:32"`
}

type auditKey struct{}

// Audited reads a setting in its BeforeCreate hook.
type Audited struct {
	ID    uint
	Email string `gorm:"size:64;uniqueIndex"`
	By    string `gorm:"size:32"`
}

func (a *Audited) BeforeCreate(tx *gorm.DB) error {
	if v, ok := tx.Get("audit:user"); ok {
		a.By = v.(string)
	}
	return nil
}

func TestEdgeCases(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{}, &Member{}, &Item{}, &Audited{})
		for i, o := range ops {
			t.Run(o.name+"/scope that clones the statement", func(t *testing.T) {
				scope := func(d *gorm.DB) *gorm.DB {
					return d.WithContext(context.Background()).Where("name = ?", "scoped-"+o.name)
				}
				var tag Tag
				created, err := o.fn(e.db.Scopes(scope), &tag)
				require.NoError(t, err)
				assert.True(t, created)
				assert.Equal(t, "scoped-"+o.name, tag.Name)
				created, err = o.fn(e.db.Scopes(scope), &Tag{})
				require.NoError(t, err)
				assert.False(t, created)
			})
			t.Run(o.name+"/scope without conditions", func(t *testing.T) {
				scope := func(d *gorm.DB) *gorm.DB { return d.WithContext(context.Background()) }
				_, err := o.fn(e.db.Scopes(scope), &Tag{Name: "x"})
				require.ErrorIs(t, err, safefind.ErrNoConditions)
			})
			t.Run(o.name+"/valuer array key", func(t *testing.T) {
				uid := UID{1, 2, 3, byte(i)}
				var it Item
				created, err := o.fn(e.db, &it, Item{UID: uid})
				require.NoError(t, err)
				assert.True(t, created)
				var stored Item
				require.NoError(t, e.other.First(&stored, it.ID).Error)
				assert.Equal(t, uid, stored.UID)
				created, err = o.fn(e.db, &Item{}, Item{UID: uid})
				require.NoError(t, err)
				assert.False(t, created)
			})
			t.Run(o.name+"/inline primary key", func(t *testing.T) {
				id := uint(9000 - 1000*i) // below the auto-increment counter the first one moves
				tag := Tag{Name: fmt.Sprintf("pk-%d", i)}
				created, err := o.fn(e.db, &tag, id)
				require.NoError(t, err)
				assert.True(t, created)
				assert.Equal(t, id, tag.ID)
				created, err = o.fn(e.db, &tag, id)
				require.NoError(t, err)
				assert.False(t, created)
			})
			t.Run(o.name+"/one-element list", func(t *testing.T) {
				var tag Tag
				created, err := o.fn(e.db, &tag, map[string]any{"name": []string{"listed-" + o.name}})
				require.NoError(t, err)
				assert.True(t, created)
				assert.Equal(t, "listed-"+o.name, tag.Name)
			})
			t.Run(o.name+"/table alias", func(t *testing.T) {
				var tag Tag
				created, err := o.fn(e.db.Table("tags AS t"), &tag, "t.name = ?", "aliased-"+o.name)
				require.NoError(t, err)
				assert.True(t, created)
				assert.EqualValues(t, 1, e.count(t, &Tag{}, "name = ?", "aliased-"+o.name))
			})
			t.Run(o.name+"/settings reach the hooks", func(t *testing.T) {
				var a Audited
				created, err := o.fn(e.db.Set("audit:user", "alice"), &a, Audited{Email: o.name})
				require.NoError(t, err)
				assert.True(t, created)
				var stored Audited
				require.NoError(t, e.other.First(&stored, a.ID).Error)
				assert.Equal(t, "alice", stored.By)
			})
			t.Run(o.name+"/parameterized query logs", func(t *testing.T) {
				var buf bytes.Buffer
				quiet := logger.New(log.New(&buf, "", 0), logger.Config{LogLevel: logger.Info, ParameterizedQueries: true})
				db := e.db.Session(&gorm.Session{Logger: quiet})
				_, err := o.fn(db, &Tag{Note: "secret-note"}, Tag{Name: "secret-" + o.name})
				require.NoError(t, err)
				assert.NotContains(t, buf.String(), "secret")
				assert.Contains(t, buf.String(), "INSERT")
			})

			refused := []struct {
				name  string
				tx    func() *gorm.DB
				conds []any
				want  error
			}{
				{"two values for one column", func() *gorm.DB { return e.db.Where("name = ?", "a") }, []any{"name = ?", "b"}, safefind.ErrUnsupportedCondition},
				{"read-only column", func() *gorm.DB { return e.db.Model(&Item{}) }, []any{map[string]any{"slug": "s", "name": "n"}}, safefind.ErrUnknownColumn},
				{"empty group", func() *gorm.DB { return e.db.Clauses(clause.Where{Exprs: []clause.Expression{clause.AndConditions{}}}) }, nil, safefind.ErrNoConditions},
				{"nil condition", func() *gorm.DB { return e.db.Clauses(clause.Where{Exprs: []clause.Expression{clause.And()}}) }, nil, safefind.ErrUnsupportedCondition},
				{"a value the column cannot take", func() *gorm.DB { return e.db.Model(&Member{}) }, []any{map[string]any{"org_id": "abc", "email": "x"}}, safefind.ErrUnsupportedCondition},
			}
			for _, c := range refused {
				t.Run(o.name+"/refused: "+c.name, func(t *testing.T) {
					db, r := e.recorded(c.tx())
					var dest any = &Tag{}
					if c.name == "read-only column" {
						dest = &Item{}
					} else if c.name == "a value the column cannot take" {
						dest = &Member{}
					}
					_, err := o.fn(db, dest, c.conds...)
					require.ErrorIs(t, err, c.want)
					assert.Empty(t, r.Statements(), "refused before anything is sent")
				})
			}
			t.Run(o.name+"/NULL in the lookup", func(t *testing.T) {
				cond := map[string]any{"org_id": (*uint)(nil), "email": "null-" + o.name}
				_, err := o.fn(e.db, &Member{Handle: "null-" + o.name}, cond)
				if o.name == "CreateOrFind" {
					require.ErrorIs(t, err, safefind.ErrUnsupportedCondition, "a unique index does not hold NULLs")
				} else {
					// IS NULL only filters FindOrCreate's reads, and email
					// alone is not unique: (org_id, email) holds no NULL.
					require.ErrorIs(t, err, safefind.ErrKeyNotUnique)
				}
			})
			t.Run(o.name+"/dest unchanged on error", func(t *testing.T) {
				require.NoError(t, e.other.Create(&Member{OrgID: 9, Email: o.name, Handle: "taken-" + o.name}).Error)
				m := Member{Handle: "taken-" + o.name, Age: 3}
				_, err := o.fn(e.db, &m, Member{OrgID: 10, Email: "e@x"})
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				assert.Equal(t, Member{Handle: "taken-" + o.name, Age: 3}, m)
			})
		}
	})
}

// A lookup with no plain column equality (an expression) is refused by the
// guard with a message that says so, before anything is sent.
func TestUniqueGuardExpressionLookup(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		db, r := e.recorded(e.db)
		_, err := safefind.FindOrCreate(db.Where("LOWER(name) = ?", "go"), &Tag{})
		require.ErrorIs(t, err, safefind.ErrKeyNotUnique)
		assert.Contains(t, err.Error(), "tags: the lookup has no plain column equality")
		assert.Empty(t, r.Statements())
	})
}

// The unique-index guard: a lookup that no primary key or unique index
// covers is refused before any data is read or written, judged from the
// model and, for an index only the database has, from its catalog (read
// once, then cached); WithUniqueGuard(false) lets it through.
func TestUniqueGuard(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				db, r := e.recorded(e.db)
				_, err := o.fn(db, &Tag{}, map[string]any{"note": "n"})
				require.ErrorIs(t, err, safefind.ErrKeyNotUnique)
				for _, s := range r.Statements() {
					assert.NotContains(t, strings.ToUpper(s), "INTO \"TAGS\"", "nothing written")
					assert.NotRegexp(t, `(?i)from .?tags.? `, s, "no data read")
				}
				r.Reset()
				_, err = o.fn(db, &Tag{}, map[string]any{"note": "n"})
				require.ErrorIs(t, err, safefind.ErrKeyNotUnique)
				assert.Len(t, r.Statements(), 1, "a refusal is not cached: the catalog is read again, and nothing else")
				assert.Zero(t, e.count(t, &Tag{}))
			})
		}

		t.Run("an index created while the plugin runs", func(t *testing.T) {
			x := open(t, e.name) // a plugin that has not cached the table
			x.reset(t, &Tag{})
			_, err := safefind.FindOrCreate(x.db, &Tag{}, map[string]any{"note": "n"})
			require.ErrorIs(t, err, safefind.ErrKeyNotUnique)
			require.NoError(t, x.other.Exec("CREATE UNIQUE INDEX idx_tags_note ON tags (note)").Error)
			db, r := x.recorded(x.db)
			created, err := safefind.FindOrCreate(db, &Tag{Name: "a"}, map[string]any{"note": "n"})
			require.NoError(t, err, "the new index counts without a restart")
			assert.True(t, created)
			r.Reset()
			created, err = safefind.FindOrCreate(db.Session(&gorm.Session{}), &Tag{}, map[string]any{"note": "n"})
			require.NoError(t, err)
			assert.False(t, created)
			assert.Len(t, r.Statements(), 1, "a new session (with a *gorm.Config of its own) shares the cached answer: only the lookup is sent: %q", r.Statements())
		})

		t.Run("an index only the database has", func(t *testing.T) {
			x := open(t, e.name) // a plugin that has not cached the table
			x.reset(t, &Tag{})
			require.NoError(t, x.other.Exec("CREATE UNIQUE INDEX idx_tags_note ON tags (note)").Error)
			for _, o := range ops {
				_, err := o.fn(x.db, &Tag{}, map[string]any{"note": "n-" + o.name, "name": "x-" + o.name})
				require.NoError(t, err, "covered by name")
				var tag Tag
				_, err = o.fn(x.db, &tag, map[string]any{"note": "m-" + o.name})
				require.NoError(t, err, "covered by the catalog's index on note")
				assert.Equal(t, "m-"+o.name, tag.Note)
				require.NoError(t, x.other.Where("name = ?", "").Delete(&Tag{}).Error) // name is unique too
			}
		})

		t.Run("the catalog's unique keys", func(t *testing.T) {
			// A table whose keys only the catalog knows: constraints (which
			// GORM's Migrator.GetIndexes leaves out on PostgreSQL), a
			// composite one, and the kinds that do not count.
			type Guarded struct {
				ID                  uint
				A, B, C, D, E, F, G *string // NULL where not set: NULLs never conflict
			}
			x := open(t, e.name)
			require.NoError(t, x.other.Migrator().DropTable("guardeds"))
			ddl := map[string][]string{
				"postgres": {
					`CREATE TABLE guardeds (id BIGSERIAL PRIMARY KEY, a TEXT UNIQUE, b TEXT, c TEXT, d TEXT, e TEXT, f TEXT, g TEXT,
						CONSTRAINT u_bc UNIQUE (b, c), CONSTRAINT u_f UNIQUE (f) DEFERRABLE INITIALLY DEFERRED)`,
					`ALTER TABLE guardeds ADD CONSTRAINT u_g UNIQUE (g)`,
					`CREATE UNIQUE INDEX u_d ON guardeds (d) WHERE d <> ''`,
					`CREATE UNIQUE INDEX u_e ON guardeds (lower(e))`,
				},
				"mysql": {
					`CREATE TABLE guardeds (id BIGINT AUTO_INCREMENT PRIMARY KEY, a VARCHAR(64) UNIQUE, b VARCHAR(64), c VARCHAR(64),
						d VARCHAR(64), e VARCHAR(64), f VARCHAR(64), g VARCHAR(64), CONSTRAINT u_bc UNIQUE (b, c))`,
					`ALTER TABLE guardeds ADD CONSTRAINT u_g UNIQUE (g(8))`,
				},
				"sqlite": {
					`CREATE TABLE guardeds (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE, b TEXT, c TEXT, d TEXT, e TEXT, f TEXT, g TEXT,
						CONSTRAINT u_bc UNIQUE (b, c))`,
					`CREATE UNIQUE INDEX u_g ON guardeds (g)`,
					`CREATE UNIQUE INDEX u_d ON guardeds (d) WHERE d <> ''`,
					`CREATE UNIQUE INDEX u_e ON guardeds (lower(e))`,
				},
			}[e.name]
			for _, stmt := range ddl {
				require.NoError(t, x.other.Exec(stmt).Error)
			}
			for _, lookup := range []map[string]any{
				{"a": "1"}, {"b": "1", "c": "1"}, {"g": "1"}, {"c": "2", "a": "2"}, {"id": 100},
			} {
				var row Guarded
				created, err := safefind.FindOrCreate(x.db, &row, lookup)
				require.NoError(t, err, "%v is covered", lookup)
				assert.True(t, created)
			}
			// Not unique: one column of a composite key; a partial index
			// (PostgreSQL, SQLite); an index on lower(e) (PostgreSQL,
			// SQLite); a deferred constraint (PostgreSQL).
			for _, lookup := range []map[string]any{{"b": "1"}, {"d": "1"}, {"e": "1"}, {"f": "1"}, {"c": "1", "d": "1"}} {
				_, err := safefind.FindOrCreate(x.db, &Guarded{}, lookup)
				require.ErrorIs(t, err, safefind.ErrKeyNotUnique, "%v", lookup)
			}
			if e.name == "postgres" {
				// INCLUDE columns are carried, not part of the key.
				require.NoError(t, x.other.Exec(`CREATE UNIQUE INDEX u_gi ON guardeds (g) INCLUDE (b)`).Error)
				require.NoError(t, x.other.Exec(`ALTER TABLE guardeds DROP CONSTRAINT u_g`).Error)
				y := open(t, e.name) // nothing cached
				_, err := safefind.FindOrCreate(y.db, &Guarded{}, map[string]any{"g": "2"})
				require.NoError(t, err, "UNIQUE (g) INCLUDE (b) covers g")
			}
			want := int64(5)
			if e.name == "postgres" {
				want = 6
			}
			assert.Equal(t, want, x.count(t, &Guarded{}), "the covered lookups created their rows, the refused ones wrote nothing")
		})

		t.Run("a table qualified by its schema", func(t *testing.T) {
			if e.name == "sqlite" {
				t.Skip("an attached database would be SQLite's schema; not covered here")
			}
			// The same table name in two schemas (databases on MySQL): only
			// the default one has a unique index on code. GORM keeps only
			// "guardeds" of "sf_archive.guardeds" in Statement.Table.
			x := open(t, e.name) // nothing cached
			create := map[string][]string{
				"postgres": {
					`CREATE SCHEMA IF NOT EXISTS sf_archive`,
					`DROP TABLE IF EXISTS sf_archive.codes`,
					`CREATE TABLE sf_archive.codes (id BIGSERIAL PRIMARY KEY, code TEXT)`,
					`DROP TABLE IF EXISTS codes`,
					`CREATE TABLE codes (id BIGSERIAL PRIMARY KEY, code TEXT UNIQUE)`,
				},
				"mysql": {
					`CREATE DATABASE IF NOT EXISTS sf_archive`,
					`DROP TABLE IF EXISTS sf_archive.codes`,
					`CREATE TABLE sf_archive.codes (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(64))`,
					`DROP TABLE IF EXISTS codes`,
					`CREATE TABLE codes (id BIGINT AUTO_INCREMENT PRIMARY KEY, code VARCHAR(64) UNIQUE)`,
				},
			}[e.name]
			for _, stmt := range create {
				require.NoError(t, x.other.Exec(stmt).Error)
			}
			type Code struct {
				ID   uint
				Code string
			}
			_, err := safefind.FindOrCreate(x.db.Table("sf_archive.codes"), &Code{}, map[string]any{"code": "c"})
			require.ErrorIs(t, err, safefind.ErrKeyNotUnique, "the archive's table has no unique index on code")
			var n int64
			require.NoError(t, x.other.Table("sf_archive.codes").Count(&n).Error)
			assert.Zero(t, n)
			var row Code
			created, err := safefind.FindOrCreate(x.db, &row, map[string]any{"code": "c"})
			require.NoError(t, err, "the default schema's table has one")
			assert.True(t, created)
		})

		t.Run("turned off", func(t *testing.T) {
			x := open(t, e.name, safefind.WithUniqueGuard(false))
			x.reset(t, &Tag{})
			var tag Tag
			created, err := safefind.FindOrCreate(x.db, &tag, map[string]any{"note": "free"})
			require.NoError(t, err)
			assert.True(t, created)
		})
	})
}

// Suffixed's BeforeCreate hook changes the lookup's key: the INSERT
// conflicts on a name the lookup does not look for.
type Suffixed struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
}

func (s *Suffixed) BeforeCreate(*gorm.DB) error {
	s.Name += "-x"
	return nil
}

// A conflict that no row of the lookup explains, and that trying again
// cannot resolve, is reported at once with its likely cause: a primary key
// left on dest by an earlier call, a key a BeforeCreate hook changed. A
// conflict on another unique key names the key the database reported,
// where it reports one (a plain INSERT's error).
func TestConflictCauses(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{}, &Suffixed{}, &Member{})
		taken := Tag{Name: "taken"}
		require.NoError(t, e.other.Create(&taken).Error)
		require.NoError(t, e.other.Session(&gorm.Session{SkipHooks: true}).Create(&Suffixed{Name: "go-x"}).Error)
		require.NoError(t, e.other.Create(&Member{OrgID: 1, Email: "a@x", Handle: "h"}).Error)
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				before := e.plugin.Stats().Retries
				stale := Tag{ID: taken.ID, Note: "from an earlier call"}
				_, err := o.fn(e.db, &stale, Tag{Name: "new-" + o.name})
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				assert.Contains(t, err.Error(), "1 attempts")
				assert.Contains(t, err.Error(), fmt.Sprintf("carried id = %d, which another row holds", taken.ID))
				assert.Equal(t, taken.ID, stale.ID, "dest as the caller prepared it")

				_, err = o.fn(e.db, &Suffixed{}, Suffixed{Name: "go"})
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				assert.Contains(t, err.Error(), "1 attempts")
				assert.Contains(t, err.Error(), "had name = go-x, not the lookup's go")
				assert.Equal(t, before, e.plugin.Stats().Retries, "not tried again")

				_, err = o.fn(e.db, &Member{Handle: "h"}, Member{OrgID: 2, Email: "b@x"})
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				assert.Contains(t, err.Error(), "likely a unique key the lookup does not cover")
				if o.name == "FindOrCreate" || e.name == "mysql" {
					// A plain INSERT: the database's error names the key.
					require.ErrorIs(t, err, gorm.ErrDuplicatedKey)
					assert.Regexp(t, `(?i)handle`, err.Error())
				}
			})
		}
	})
}
