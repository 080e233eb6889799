package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// FirstOrCreate parity: the same chain, with Where, inline conditions,
// Attrs and Assign, runs through GORM's FirstOrCreate and through both
// safefind calls, each on freshly made tables, and the rows stored and dest
// must agree. GORM is the oracle. The chains are those of GORM's own
// tests/upsert_test.go TestFindOrCreate, with a unique index on the lookup,
// and more.

// Person is GORM's test User, reduced to what FirstOrCreate touches, with a
// unique name; its update hooks count.
type Person struct {
	ID        uint
	Name      string `gorm:"size:64;uniqueIndex"`
	Age       int
	Note      string `gorm:"size:64"`
	Active    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PlainPerson is Person without hooks: CreateOrFind with Assign is then one
// statement where the dialect allows (PostgreSQL).
type PlainPerson struct {
	ID        uint
	Name      string `gorm:"size:64;uniqueIndex"`
	Age       int
	Note      string `gorm:"size:64"`
	Active    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

type personHooksKey struct{}

// personHooks counts the update hooks GORM runs.
type personHooks struct{ beforeSave, beforeUpdate, afterUpdate, afterSave atomic.Int64 }

// countHook counts one run of the hook which picks.
func countHook(tx *gorm.DB, which func(*personHooks) *atomic.Int64) error {
	if h, ok := tx.Statement.Context.Value(personHooksKey{}).(*personHooks); ok {
		which(h).Add(1)
	}
	return nil
}

func (p *Person) BeforeSave(tx *gorm.DB) error {
	return countHook(tx, func(h *personHooks) *atomic.Int64 { return &h.beforeSave })
}

func (p *Person) BeforeUpdate(tx *gorm.DB) error {
	return countHook(tx, func(h *personHooks) *atomic.Int64 { return &h.beforeUpdate })
}

func (p *Person) AfterUpdate(tx *gorm.DB) error {
	return countHook(tx, func(h *personHooks) *atomic.Int64 { return &h.afterUpdate })
}

func (p *Person) AfterSave(tx *gorm.DB) error {
	return countHook(tx, func(h *personHooks) *atomic.Int64 { return &h.afterSave })
}

// parityCase is a chain and its inline conditions, run on a table that
// holds seed.
type parityCase struct {
	name  string
	seed  []Person
	chain func(db *gorm.DB) *gorm.DB
	conds []any
	// insertFirst: CreateOrFind takes the chain too (its conditions are
	// column equalities).
	insertFirst bool
}

var existing = []Person{{Name: "ann", Age: 33, Note: "seeded", Active: true}, {Name: "bob", Age: 40}}

var parityCases = []parityCase{
	{"Where struct, miss", nil, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "carl", Age: 33}) }, nil, true},
	{"Where struct, hit", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "ann", Age: 33}) }, nil, true},
	{"inline map, miss", existing, func(db *gorm.DB) *gorm.DB { return db }, []any{map[string]any{"name": "dora"}}, true},
	{"Attrs column value, miss", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "eve"}).Attrs("age", 44) }, nil, true},
	{"Attrs column value, hit", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "ann"}).Attrs("age", 44) }, nil, true},
	{"Attrs struct, miss", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "fay"}).Attrs(Person{Age: 20, Note: "attrs"})
	}, nil, true},
	{"Attrs map and Assign map, miss", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "gus"}).Attrs(map[string]any{"age": 21, "note": "attrs"}).Assign(map[string]any{"note": "assigned"})
	}, nil, true},
	{"Attrs map and Assign map, hit", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "ann"}).Attrs(map[string]any{"age": 21, "note": "attrs"}).Assign(map[string]any{"note": "assigned"})
	}, nil, true},
	{"Assign column value, hit", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "ann"}).Assign("age", 55) }, nil, true},
	{"Assign column value, miss", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "hal"}).Assign("age", 55) }, nil, true},
	{"Assign struct, miss", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "ida"}).Assign(Person{Age: 44}) }, nil, true},
	{"Assign struct, hit", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "ann"}).Assign(Person{Age: 44}) }, nil, true},
	{"Assign pointer to struct, hit", existing, func(db *gorm.DB) *gorm.DB { return db.Where(&Person{Name: "bob"}).Assign(&Person{Note: "ptr"}) }, nil, true},
	{"Assign zero values by map, hit", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "ann"}).Assign(map[string]any{"age": 0, "active": false})
	}, nil, true},
	{"Assign clause.Eq, hit", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "ann"}).Assign(clause.Eq{Column: "note", Value: "eq"})
	}, nil, true},
	{"Assign the lookup's own value, hit", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "ann"}).Assign(map[string]any{"name": "ann", "age": 1})
	}, nil, true},
	{"Assign struct narrowed by a name, hit", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "ann"}).Assign(Person{Age: 5, Note: "n"}, "Age")
	}, nil, true},
	{"Assign struct narrowed by a name, miss", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "liz"}).Assign(Person{Age: 5, Note: "n"}, "Age")
	}, nil, true},
	{"Assign with inline conditions, hit", existing, func(db *gorm.DB) *gorm.DB { return db.Assign("age", 66) }, []any{Person{Name: "bob"}}, true},
	{"Assign with a filter, hit", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "ann"}).Where("age > ?", 18).Assign("note", "adult")
	}, nil, false},
	{"Assign with a filter, miss", existing, func(db *gorm.DB) *gorm.DB {
		return db.Where(&Person{Name: "kim"}).Where("age > ?", 50).Assign("note", "old")
	}, nil, false},
	{"a scope's Where and the chain's Attrs, miss", existing, func(db *gorm.DB) *gorm.DB {
		return db.Scopes(func(d *gorm.DB) *gorm.DB { return d.Where(&Person{Name: "jo"}) }).Attrs("age", 9)
	}, nil, true},
}

// parityRow is what a row or dest holds that the comparison looks at:
// times only by whether they are set and whether UpdatedAt moved.
type parityRow struct {
	ID           uint
	Name         string
	Age          int
	Note         string
	Active       bool
	HasCreatedAt bool
	UpdatedMoved bool
}

func parityOf(p Person, seeded map[string]time.Time) parityRow {
	before, ok := seeded[p.Name]
	return parityRow{
		ID: p.ID, Name: p.Name, Age: p.Age, Note: p.Note, Active: p.Active,
		HasCreatedAt: !p.CreatedAt.IsZero(),
		UpdatedMoved: !ok || !p.UpdatedAt.Equal(before),
	}
}

// parityRun is what one implementation left: the rows stored, dest, the
// error and the update hooks run.
type parityRun struct {
	rows  []parityRow
	dest  parityRow
	err   error
	hooks [4]int64
}

func runParity[T Person | PlainPerson](t *testing.T, e *env, c parityCase, run func(db *gorm.DB, dest *T) error) parityRun {
	t.Helper()
	e.reset(t, new(T))
	seeded := map[string]time.Time{}
	for _, s := range c.seed {
		row := T(s)
		require.NoError(t, e.other.Create(&row).Error)
		seeded[s.Name] = time.Time{}
	}
	for name := range seeded {
		// Stored times are cut to the column's precision.
		var p T
		require.NoError(t, e.other.Where("name = ?", name).First(&p).Error)
		seeded[name] = Person(p).UpdatedAt
	}
	// Not a synchronisation: an update must move UpdatedAt past the
	// column's precision (a millisecond on MySQL/MariaDB) to be seen.
	time.Sleep(2 * time.Millisecond)
	h := &personHooks{}
	db := e.db.WithContext(context.WithValue(context.Background(), personHooksKey{}, h))
	var dest T
	err := run(c.chain(db), &dest)
	var stored []T
	require.NoError(t, e.other.Order("name").Find(&stored).Error)
	out := parityRun{err: err, dest: parityOf(Person(dest), seeded),
		hooks: [4]int64{h.beforeSave.Load(), h.beforeUpdate.Load(), h.afterUpdate.Load(), h.afterSave.Load()}}
	for _, s := range stored {
		out.rows = append(out.rows, parityOf(Person(s), seeded))
	}
	return out
}

func TestFirstOrCreateParity(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, c := range parityCases {
			t.Run(c.name, func(t *testing.T) { checkParity[Person](t, e, c) })
			t.Run(c.name+"/no hooks", func(t *testing.T) { checkParity[PlainPerson](t, e, c) })
		}
	})
}

// checkParity runs c through FirstOrCreate and both calls, into a T.
func checkParity[T Person | PlainPerson](t *testing.T, e *env, c parityCase) {
	gormRun := runParity(t, e, c, func(db *gorm.DB, dest *T) error {
		return db.FirstOrCreate(dest, c.conds...).Error
	})
	require.NoError(t, gormRun.err)
	for _, o := range ops {
		if o.name == "CreateOrFind" && !c.insertFirst {
			continue
		}
		got := runParity(t, e, c, func(db *gorm.DB, dest *T) error {
			_, err := o.fn(db, dest, c.conds...)
			return err
		})
		require.NoError(t, got.err, o.name)
		assert.Equal(t, gormRun.rows, got.rows, "%s: rows stored", o.name)
		assert.Equal(t, gormRun.dest, got.dest, "%s: dest", o.name)
		want := gormRun.hooks
		_, hooked := any(new(T)).(*Person)
		if hit := len(gormRun.rows) == len(c.seed); hooked && hit && o.name == "CreateOrFind" {
			want[0]++ // the BeforeSave of the INSERT it tries first
		}
		assert.Equal(t, want, got.hooks, "%s: BeforeSave, BeforeUpdate, AfterUpdate, AfterSave", o.name)
	}
}

// What FirstOrCreate would silently drop or store wrongly, safefind refuses,
// before anything is written.
func TestAttrsAssignRefused(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		cases := []struct {
			name  string
			chain func(db *gorm.DB) *gorm.DB
			err   error
		}{
			{"Assign an unknown column", func(db *gorm.DB) *gorm.DB { return db.Where("name = ?", "ann").Assign("nope", 1) }, safefind.ErrUnknownColumn},
			{"Attrs an unknown column by map", func(db *gorm.DB) *gorm.DB {
				return db.Where("name = ?", "ann").Attrs(map[string]any{"nope": 1})
			}, safefind.ErrUnknownColumn},
			{"Assign a condition", func(db *gorm.DB) *gorm.DB { return db.Where("name = ?", "ann").Assign("age > ?", 3) }, safefind.ErrInvalidAttributes},
			{"Assign a value the field cannot take", func(db *gorm.DB) *gorm.DB {
				return db.Where("name = ?", "ann").Assign("age", "not a number")
			}, safefind.ErrInvalidAttributes},
			{"Assign that changes the lookup's key", func(db *gorm.DB) *gorm.DB { return db.Where("name = ?", "ann").Assign("name", "zed") }, safefind.ErrInvalidAttributes},
			{"Attrs that changes the lookup's key", func(db *gorm.DB) *gorm.DB {
				return db.Where(&Person{Name: "new"}).Attrs(Person{Name: "other"})
			}, safefind.ErrInvalidAttributes},
			{"Assign an expression, which FirstOrCreate drops when it creates", func(db *gorm.DB) *gorm.DB {
				return db.Where("name = ?", "ann").Assign(map[string]any{"age": gorm.Expr("age + 1")})
			}, safefind.ErrInvalidAttributes},
			{"Attrs set in a scope, which FirstOrCreate ignores", func(db *gorm.DB) *gorm.DB {
				return db.Scopes(func(d *gorm.DB) *gorm.DB { return d.Where("name = ?", "jo").Attrs("age", 9) })
			}, safefind.ErrInvalidAttributes},
		}
		for _, c := range cases {
			for _, o := range ops {
				t.Run(c.name+"/"+o.name, func(t *testing.T) {
					e.reset(t, &Person{})
					require.NoError(t, e.other.Create(&Person{Name: "ann", Age: 1}).Error)
					db, r := e.recorded(e.db)
					var dest Person
					_, err := o.fn(c.chain(db), &dest)
					require.ErrorIs(t, err, c.err)
					for _, s := range r.Statements() {
						assert.False(t, strings.HasPrefix(s, "INSERT") || strings.HasPrefix(s, "UPDATE"), s)
					}
					var ann Person
					require.NoError(t, e.other.Where("name = ?", "ann").First(&ann).Error)
					assert.Equal(t, 1, ann.Age)
					assert.EqualValues(t, 1, e.count(t, &Person{}))
				})
			}
		}
		t.Run("batches refuse Attrs and Assign", func(t *testing.T) {
			for _, o := range batchOps {
				_, err := o.fn(e.db.Assign("age", 3), &[]Person{{Name: "x"}}, "name")
				require.ErrorIs(t, err, safefind.ErrInvalidAttributes, o.name)
			}
		})
	})
}

// Assign updates the lookup's row and no other: not a row that holds
// another unique key of the row to create (on MySQL/MariaDB, ON DUPLICATE
// KEY UPDATE would update that one), not a row that holds the lookup's
// unique key but not the rest of the lookup.
func TestAssignNeverTouchesAnotherRow(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				e.reset(t, &Member{})
				other := Member{OrgID: 1, Email: "a@x", Handle: "taken", Age: 1}
				mine := Member{OrgID: 1, Email: "b@x", Handle: "mine", Age: 2}
				require.NoError(t, e.other.Create(&other).Error)
				require.NoError(t, e.other.Create(&mine).Error)
				age := func(id uint) int {
					var m Member
					require.NoError(t, e.other.First(&m, id).Error)
					return m.Age
				}

				// The lookup's row exists; the row to create would also take
				// another row's handle: the lookup's row is updated.
				dest := Member{Handle: "taken"}
				created, err := o.fn(e.db.Where(&Member{OrgID: 1, Email: "b@x"}).Assign(Member{Age: 20}), &dest)
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, mine.ID, dest.ID)
				assert.Equal(t, 20, age(mine.ID))
				assert.Equal(t, 1, age(other.ID), "the row holding the handle is untouched")

				// The lookup's row does not exist, and the row to create takes
				// another row's handle: a conflict that no row of the lookup
				// explains, and nothing is updated.
				dest = Member{Handle: "taken"}
				_, err = o.fn(e.db.Where(&Member{OrgID: 1, Email: "c@x"}).Assign(Member{Age: 30}), &dest)
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				assert.Equal(t, 1, age(other.ID), "the row holding the handle is untouched")
				assert.Equal(t, 20, age(mine.ID))

				// The lookup names the unique key and more: a row with the key
				// but another age is not the lookup's, and is not updated.
				dest = Member{}
				_, err = o.fn(e.db.Where(&Member{OrgID: 1, Email: "a@x", Age: 5}).Assign(Member{Handle: "renamed"}), &dest)
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				var stored Member
				require.NoError(t, e.other.First(&stored, other.ID).Error)
				assert.Equal(t, "taken", stored.Handle)
				assert.EqualValues(t, 2, e.count(t, &Member{}))
			})
		}
	})
}

type replaceKey struct{}

// replaceOnce registers, with register, a callback that once, on a
// statement sent (not a DryRun) whose context carries key, deletes first and
// creates another row with its name: another caller replacing the row at
// that point. It returns the new row, filled once the callback ran.
func (e *env) replaceOnce(t *testing.T, register func(string, func(*gorm.DB)) error, key any, first PlainPerson) *PlainPerson {
	t.Helper()
	replaced := &PlainPerson{}
	var once sync.Once
	require.NoError(t, register(fmt.Sprintf("test:replace_%T", key), func(db *gorm.DB) {
		if db.Statement.Context.Value(key) == nil || db.DryRun {
			return
		}
		once.Do(func() {
			require.NoError(t, e.other.Delete(&PlainPerson{}, first.ID).Error)
			*replaced = PlainPerson{Name: first.Name, Note: "another caller's"}
			require.NoError(t, e.other.Create(replaced).Error)
		})
	}))
	return replaced
}

// A row deleted and created again under another id between the read and
// Assign's UPDATE: the UPDATE matches nothing, the read after it finds the
// new row, and the new row is updated, never returned as updated without
// it.
func TestAssignRowReplacedBeforeUpdate(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &PlainPerson{})
		first := PlainPerson{Name: "ann", Note: "first"}
		require.NoError(t, e.other.Create(&first).Error)
		replaced := e.replaceOnce(t, e.db.Callback().Update().Before("gorm:update").Register, replaceKey{}, first)
		ctx := context.WithValue(context.Background(), replaceKey{}, true)
		var dest PlainPerson
		created, err := safefind.FindOrCreate(e.db.WithContext(ctx).Where(&PlainPerson{Name: "ann"}).Assign(map[string]any{"note": "mine"}), &dest)
		require.NoError(t, err)
		assert.False(t, created)
		require.NotZero(t, replaced.ID, "the row was replaced before the UPDATE")
		assert.Equal(t, replaced.ID, dest.ID)
		assert.Equal(t, "mine", dest.Note)
		var stored PlainPerson
		require.NoError(t, e.other.Where("name = ?", "ann").First(&stored).Error)
		assert.Equal(t, replaced.ID, stored.ID)
		assert.Equal(t, "mine", stored.Note, "the row that holds the key got the assignment")
	})
}

// Gadget's handle gets a unique index after safefind read the table's
// unique keys.
type Gadget struct {
	ID     uint
	Name   string `gorm:"size:64;uniqueIndex"`
	Handle string `gorm:"size:32"`
	Age    int
}

// A unique key created after the catalog was read: where CreateOrFind with
// Assign is one ON DUPLICATE KEY UPDATE (MySQL/MariaDB), the statement can
// meet the row that holds the new key; it leaves that row as it was, and
// the lookup's row is updated apart.
func TestUpsertKeyCreatedLater(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Gadget{})
		// The first upsert reads the table's unique keys: name only (on
		// PostgreSQL, where only a transaction needs them, in one).
		require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
			_, err := safefind.CreateOrFind(tx.Where(&Gadget{Name: "warm"}).Assign(Gadget{Age: 1}), &Gadget{})
			return err
		}))
		require.NoError(t, e.other.Exec("CREATE UNIQUE INDEX idx_gadgets_handle ON gadgets (handle)").Error)
		a := Gadget{Name: "a", Handle: "taken", Age: 1}
		b := Gadget{Name: "b", Handle: "b", Age: 2}
		require.NoError(t, e.other.Create(&a).Error)
		require.NoError(t, e.other.Create(&b).Error)
		age := func(id uint) int {
			var g Gadget
			require.NoError(t, e.other.First(&g, id).Error)
			return g.Age
		}

		// No row for the lookup; the row to create takes a's handle.
		_, err := safefind.CreateOrFind(e.db.Where(&Gadget{Name: "c"}).Assign(Gadget{Age: 30}), &Gadget{Handle: "taken"})
		require.ErrorIs(t, err, safefind.ErrConflictNotFound)
		assert.Equal(t, 1, age(a.ID), "the row holding the handle is untouched")
		// The same in a transaction: an error (on PostgreSQL the unique
		// violation, which aborts the transaction), never a change to a.
		err = e.db.Transaction(func(tx *gorm.DB) error {
			_, err := safefind.CreateOrFind(tx.Where(&Gadget{Name: "c"}).Assign(Gadget{Age: 30}), &Gadget{Handle: "taken"})
			return err
		})
		require.Error(t, err)
		assert.Equal(t, 1, age(a.ID), "the row holding the handle is untouched")

		// b is the lookup's row; the row to create also takes a's handle.
		dest := Gadget{Handle: "taken"}
		created, err := safefind.CreateOrFind(e.db.Where(&Gadget{Name: "b"}).Assign(Gadget{Age: 20}), &dest)
		require.NoError(t, err)
		assert.False(t, created)
		assert.Equal(t, b.ID, dest.ID)
		assert.Equal(t, 20, dest.Age)
		assert.Equal(t, 20, age(b.ID))
		assert.Equal(t, 1, age(a.ID), "the row holding the handle is untouched")
	})
}

type deleteKey struct{}

// A row deleted between the read and Assign's UPDATE goes back to the create
// path: the call creates it, with its Assign, and says so.
func TestAssignRowDeletedBeforeUpdate(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		var once sync.Once
		require.NoError(t, e.db.Callback().Update().Before("gorm:update").Register("test:delete", func(db *gorm.DB) {
			if id, ok := db.Statement.Context.Value(deleteKey{}).(uint); ok {
				once.Do(func() { require.NoError(t, e.other.Delete(&PlainPerson{}, id).Error) })
			}
		}))
		e.reset(t, &PlainPerson{})
		first := PlainPerson{Name: "ann", Note: "first"}
		require.NoError(t, e.other.Create(&first).Error)
		ctx := context.WithValue(context.Background(), deleteKey{}, first.ID)
		var dest PlainPerson
		created, err := safefind.FindOrCreate(e.db.WithContext(ctx).Where(&PlainPerson{Name: "ann"}).Assign(map[string]any{"note": "mine"}), &dest)
		require.NoError(t, err)
		assert.True(t, created, "the row was created again")
		assert.NotEqual(t, first.ID, dest.ID)
		assert.Equal(t, "mine", dest.Note)
		var stored PlainPerson
		require.NoError(t, e.other.Where("name = ?", "ann").First(&stored).Error)
		assert.Equal(t, dest.ID, stored.ID)
		assert.Equal(t, "mine", stored.Note)
		assert.EqualValues(t, 1, e.count(t, &PlainPerson{}))
	})
}

// Upserted has no hooks, so CreateOrFind with Assign may be one statement;
// its fields are those whose values an INSERT could store otherwise than
// FirstOrCreate's UPDATE binds them.
type Upserted struct {
	ID        uint
	Name      string `gorm:"size:64;uniqueIndex"`
	Age       int
	Score     int `gorm:"default:18"`
	Note      string
	UpdatedAt time.Time
}

// ReadOnlyStamp's UpdatedAt is never written by GORM.
type ReadOnlyStamp struct {
	ID        uint
	Name      string `gorm:"size:64;uniqueIndex"`
	Note      string
	UpdatedAt *time.Time `gorm:"->"`
}

// CreateOrFind with Assign stores and returns, on a row that exists, what
// FirstOrCreate's UPDATE does, whatever statement it takes: the values as
// Updates binds them, UpdatedAt as Updates moves it.
func TestUpsertStoresAsFirstOrCreate(t *testing.T) {
	type outcome struct {
		failed              bool
		Age, Score          int
		Note                string
		DestAge, DestScore  int
		DestNote            string
		UpdatedMoved, Found bool
	}
	forEachDB(t, func(t *testing.T, e *env) {
		seeded := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		cases := []struct {
			name  string
			chain func(db *gorm.DB) *gorm.DB
		}{
			{"zero into a field with a default", func(db *gorm.DB) *gorm.DB { return db.Where(&Upserted{Name: "ann"}).Assign("score", "0") }},
			{"a fraction into an integer (not on SQLite, which stores it)", func(db *gorm.DB) *gorm.DB {
				return db.Where(&Upserted{Name: "ann"}).Assign("age", 1.7)
			}},
			{"SkipHooks keeps UpdatedAt", func(db *gorm.DB) *gorm.DB {
				return db.Session(&gorm.Session{SkipHooks: true}).Where(&Upserted{Name: "ann"}).Assign("note", "n")
			}},
			{"a plain value", func(db *gorm.DB) *gorm.DB {
				return db.Where(&Upserted{Name: "ann"}).Assign(Upserted{Age: 9, Note: "x"})
			}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				if e.name == "sqlite" && strings.Contains(c.name, "not on SQLite") {
					t.Skip("SQLite stores 1.7 in an INTEGER column, and no int reads it back")
				}
				run := func(fn func(db *gorm.DB, dest *Upserted) error) outcome {
					e.reset(t, &Upserted{})
					require.NoError(t, e.other.Exec("INSERT INTO upserteds (name, age, score, note, updated_at) VALUES (?, ?, ?, ?, ?)", "ann", 5, 7, "seed", seeded).Error)
					var dest Upserted
					err := fn(c.chain(e.db), &dest)
					var stored Upserted
					require.NoError(t, e.other.First(&stored).Error)
					return outcome{err != nil, stored.Age, stored.Score, stored.Note, dest.Age, dest.Score, dest.Note,
						!stored.UpdatedAt.Equal(seeded), dest.ID == stored.ID}
				}
				want := run(func(db *gorm.DB, dest *Upserted) error { return db.FirstOrCreate(dest).Error })
				for _, o := range ops {
					got := run(func(db *gorm.DB, dest *Upserted) error { _, err := o.fn(db, dest); return err })
					assert.Equal(t, want, got, o.name)
				}
			})
		}
		t.Run("a read-only UpdatedAt", func(t *testing.T) {
			run := func(fn func(db *gorm.DB, dest *ReadOnlyStamp) error) *time.Time {
				e.reset(t, &ReadOnlyStamp{})
				require.NoError(t, e.other.Exec("INSERT INTO read_only_stamps (name, note, updated_at) VALUES (?, ?, ?)", "ann", "seed", seeded).Error)
				require.NoError(t, fn(e.db.Where(&ReadOnlyStamp{Name: "ann"}).Assign("note", "n"), &ReadOnlyStamp{}))
				var stored ReadOnlyStamp
				require.NoError(t, e.other.First(&stored).Error)
				return stored.UpdatedAt
			}
			want := run(func(db *gorm.DB, dest *ReadOnlyStamp) error { return db.FirstOrCreate(dest).Error })
			require.NotNil(t, want)
			for _, o := range ops {
				got := run(func(db *gorm.DB, dest *ReadOnlyStamp) error { _, err := o.fn(db, dest); return err })
				require.NotNil(t, got, o.name)
				assert.True(t, want.Equal(*got), "%s: %v, want %v", o.name, got, want)
			}
		})
	})
}

type replaceOnReadKey struct{}

// The row replaced between CreateOrFind's upsert and the read after it
// (MySQL/MariaDB): the row read is another than the one the statement met,
// so the call goes on as after a conflict and updates the new row, never
// returning an assignment that is not stored.
func TestUpsertRowReplacedBeforeRead(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &PlainPerson{})
		first := PlainPerson{Name: "ann", Note: "first"}
		require.NoError(t, e.other.Create(&first).Error)
		e.replaceOnce(t, e.db.Callback().Query().Before("gorm:query").Register, replaceOnReadKey{}, first)
		ctx := context.WithValue(context.Background(), replaceOnReadKey{}, true)
		var dest PlainPerson
		created, err := safefind.CreateOrFind(e.db.WithContext(ctx).Where(&PlainPerson{Name: "ann"}).Assign(map[string]any{"note": "mine"}), &dest)
		require.NoError(t, err)
		assert.False(t, created)
		var stored PlainPerson
		require.NoError(t, e.other.Where("name = ?", "ann").First(&stored).Error)
		assert.Equal(t, stored.ID, dest.ID)
		assert.Equal(t, "mine", dest.Note)
		assert.Equal(t, "mine", stored.Note, "dest's assignment is stored")
	})
}

// Part lives in a partitioned table on PostgreSQL, which cannot return
// xmax: CreateOrFind with Assign is a WITH query of an INSERT and an UPDATE
// there.
type Part struct {
	Name string `gorm:"primaryKey;size:64"`
	Note string
}

// createParts creates Part's table, partitioned, on PostgreSQL.
func createParts(t *testing.T, e *env) {
	t.Helper()
	require.NoError(t, e.other.Exec("DROP TABLE IF EXISTS parts").Error)
	require.NoError(t, e.other.Exec("CREATE TABLE parts (name varchar(64) PRIMARY KEY, note text) PARTITION BY HASH (name)").Error)
	require.NoError(t, e.other.Exec("CREATE TABLE parts_0 PARTITION OF parts FOR VALUES WITH (MODULUS 2, REMAINDER 0)").Error)
	require.NoError(t, e.other.Exec("CREATE TABLE parts_1 PARTITION OF parts FOR VALUES WITH (MODULUS 2, REMAINDER 1)").Error)
}

func TestUpsertPartitionedTable(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name != "postgres" {
			t.Skip("partitioned tables are PostgreSQL's")
		}
		createParts(t, e)
		// The first call reads the table's kind.
		_, err := safefind.CreateOrFind(e.db.Where(&Part{Name: "warm"}).Assign(Part{Note: "w"}), &Part{})
		require.NoError(t, err)
		for i, want := range []bool{true, false} {
			db, r := e.recorded(e.db)
			var dest Part
			created, err := safefind.CreateOrFind(db.Where(&Part{Name: "a"}).Assign(Part{Note: fmt.Sprint("n", i)}), &dest)
			require.NoError(t, err)
			assert.Equal(t, want, created)
			assert.Equal(t, Part{Name: "a", Note: fmt.Sprint("n", i)}, dest)
			assert.Equal(t, []string{"WITH"}, kinds(r.Statements()))
			var stored Part
			require.NoError(t, e.other.Where("name = ?", "a").First(&stored).Error)
			assert.Equal(t, dest, stored)
		}
	})
}
