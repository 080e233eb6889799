package tests

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

type op struct {
	name string
	fn   func(tx *gorm.DB, dest any, conds ...any) (bool, error)
}

var ops = []op{
	{"FindOrCreate", safefind.FindOrCreate},
	{"CreateOrFind", safefind.CreateOrFind},
}

func TestCreateThenFind(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				e.reset(t, &Tag{})
				before := e.plugin.Stats()

				first := Tag{Note: "attrs"}
				created, err := o.fn(e.db.Where("name = ?", "go"), &first)
				require.NoError(t, err)
				assert.True(t, created)
				assert.NotZero(t, first.ID)
				assert.Equal(t, "go", first.Name, "the lookup's equality is set on the created row")
				assert.Equal(t, "attrs", first.Note, "dest's fields are the attributes to create with")

				second := Tag{Note: "ignored on a hit"}
				created, err = o.fn(e.db.Where("name = ?", "go"), &second)
				require.NoError(t, err)
				assert.False(t, created)
				assert.Equal(t, first, second, "a hit overwrites dest with the stored row")

				var stored Tag
				require.NoError(t, e.other.First(&stored, first.ID).Error)
				assert.Equal(t, first, stored)
				assert.EqualValues(t, 1, e.count(t, &Tag{}))

				after := e.plugin.Stats()
				assert.EqualValues(t, 1, after.Created-before.Created)
				assert.EqualValues(t, 1, after.Found-before.Found)
				assert.EqualValues(t, 0, after.Savepoints-before.Savepoints)
			})
		}
	})
}

// Every way a GORM user writes a lookup: the row created matches the lookup,
// and the next call finds it.
func TestConditionForms(t *testing.T) {
	byOrg := func(org uint) func(*gorm.DB) *gorm.DB {
		return func(db *gorm.DB) *gorm.DB { return db.Where(&Member{OrgID: org}) }
	}
	cases := []struct {
		name  string
		tx    func(db *gorm.DB) *gorm.DB
		conds []any
	}{
		{"inline struct", nil, []any{Member{OrgID: 1, Email: "a@x"}}},
		{"inline struct pointer", nil, []any{&Member{OrgID: 1, Email: "a@x"}}},
		{"inline map", nil, []any{map[string]any{"org_id": 1, "email": "a@x"}}},
		{"inline SQL", nil, []any{"org_id = ? AND email = ?", 1, "a@x"}},
		{"Where SQL", func(db *gorm.DB) *gorm.DB { return db.Where("org_id = ?", 1).Where("email = ?", "a@x") }, nil},
		{"Where quoted and qualified", func(db *gorm.DB) *gorm.DB {
			return db.Where(`"members"."org_id" = ? and "email" = ?`, 1, "a@x")
		}, nil},
		{"Where clause.Eq", func(db *gorm.DB) *gorm.DB {
			return db.Clauses(clause.Eq{Column: clause.Column{Name: "org_id"}, Value: 1}, clause.Eq{Column: "email", Value: "a@x"})
		}, nil},
		{"Where group", func(db *gorm.DB) *gorm.DB {
			return db.Where(db.Where("org_id = ?", 1).Where(map[string]any{"email": "a@x"}))
		}, nil},
		{"Scopes and inline", func(db *gorm.DB) *gorm.DB { return db.Scopes(byOrg(1)) }, []any{"email = ?", "a@x"}},
		{"Model and Table", func(db *gorm.DB) *gorm.DB { return db.Model(&Member{}).Table("members") }, []any{Member{OrgID: 1, Email: "a@x"}}},
		{"Session and WithContext", func(db *gorm.DB) *gorm.DB {
			return db.Session(&gorm.Session{}).WithContext(context.Background()).Where(Member{OrgID: 1})
		}, []any{map[string]any{"email": "a@x"}}},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			for _, c := range cases {
				t.Run(o.name+"/"+c.name, func(t *testing.T) {
					e.reset(t, &Member{})
					chain := func() *gorm.DB {
						if e.name == "mysql" {
							// MySQL quotes with backticks; ANSI quotes are a mode.
							if c.name == "Where quoted and qualified" {
								return e.db.Where("`members`.`org_id` = ? and `email` = ?", 1, "a@x")
							}
						}
						if c.tx == nil {
							return e.db
						}
						return c.tx(e.db)
					}
					m := Member{Handle: "h1", Age: 7}
					created, err := o.fn(chain(), &m, c.conds...)
					require.NoError(t, err)
					assert.True(t, created)
					assert.EqualValues(t, 1, m.OrgID)
					assert.Equal(t, "a@x", m.Email)
					assert.Equal(t, 7, m.Age)

					again := Member{Handle: "h2"}
					created, err = o.fn(chain(), &again, c.conds...)
					require.NoError(t, err)
					assert.False(t, created)
					assert.Equal(t, m, again)
					assert.EqualValues(t, 1, e.count(t, &Member{}))
				})
			}
		}
	})
}

func TestBadInput(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	var nilTag *Tag
	type bad struct {
		name      string
		tx        func(e *env) *gorm.DB
		dest      any
		conds     []any
		want      error
		sent      int  // statements that may reach the database
		onlyFirst bool // the case is for CreateOrFind only
	}
	cases := []bad{
		{name: "nil dest", dest: nil, conds: []any{Tag{Name: "x"}}, want: safefind.ErrInvalidDest},
		{name: "typed nil dest", dest: nilTag, conds: []any{Tag{Name: "x"}}, want: safefind.ErrInvalidDest},
		{name: "non-pointer dest", dest: Tag{}, conds: []any{Tag{Name: "x"}}, want: safefind.ErrInvalidDest},
		{name: "pointer to slice", dest: &[]Tag{}, conds: []any{Tag{Name: "x"}}, want: safefind.ErrInvalidDest},
		{name: "pointer to int", dest: new(int), conds: []any{Tag{Name: "x"}}, want: safefind.ErrInvalidDest},
		{name: "dest of another model", tx: func(e *env) *gorm.DB { return e.db.Model(&Member{}) }, dest: &Tag{}, conds: []any{"email = ?", "x"}, want: safefind.ErrInvalidDest},
		{name: "no conditions", dest: &Tag{Name: "x"}, want: safefind.ErrNoConditions},
		{name: "zero struct in Where", tx: func(e *env) *gorm.DB { return e.db.Where(Tag{Name: ""}) }, dest: &Tag{}, want: safefind.ErrNoConditions},
		{name: "zero struct inline beside a Where", tx: func(e *env) *gorm.DB { return e.db.Where("note = ?", "n") }, dest: &Tag{}, conds: []any{Tag{Name: ""}}, want: safefind.ErrNoConditions},
		{name: "unknown column in map", dest: &Tag{}, conds: []any{map[string]any{"nosuch": 1}}, want: safefind.ErrUnknownColumn},
		{name: "unknown column in SQL", tx: func(e *env) *gorm.DB { return e.db.Where("nosuch = ?", 1) }, dest: &Tag{}, want: safefind.ErrUnknownColumn},
		{name: "range in CreateOrFind", tx: func(e *env) *gorm.DB { return e.db.Where("name > ?", "a") }, dest: &Tag{}, want: safefind.ErrUnsupportedCondition, onlyFirst: true},
		{name: "IN in CreateOrFind", dest: &Tag{}, conds: []any{map[string]any{"name": []string{"a", "b"}}}, want: safefind.ErrUnsupportedCondition, onlyFirst: true},
		{name: "canceled context", tx: func(e *env) *gorm.DB { return e.db.WithContext(canceled) }, dest: &Tag{}, conds: []any{Tag{Name: "x"}}, want: context.Canceled},
		{name: "plugin not registered", tx: func(e *env) *gorm.DB { return e.other }, dest: &Tag{}, conds: []any{Tag{Name: "x"}}, want: safefind.ErrNotRegistered},
		{name: "nil db", tx: func(e *env) *gorm.DB { return nil }, dest: &Tag{}, conds: []any{Tag{Name: "x"}}, want: safefind.ErrNotRegistered},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{}, &Member{})
		for _, o := range ops {
			for _, c := range cases {
				if c.onlyFirst && o.name != "CreateOrFind" {
					continue
				}
				t.Run(o.name+"/"+c.name, func(t *testing.T) {
					tx := e.db
					if c.tx != nil {
						tx = c.tx(e)
					}
					r := &Recorder{}
					if tx != nil {
						tx = tx.WithContext(withRecorder(tx.Statement.Context, r))
					}
					var created bool
					var err error
					require.NotPanics(t, func() { created, err = o.fn(tx, c.dest, c.conds...) })
					require.ErrorIs(t, err, c.want)
					assert.False(t, created)
					assert.Empty(t, r.Statements(), "bad input sends nothing")
					assert.EqualValues(t, 0, e.count(t, &Tag{}), "bad input writes nothing")
				})
			}
		}
		t.Run("unknown column in a range is the database's error, at once", func(t *testing.T) {
			db, r := e.recorded(e.db)
			_, err := safefind.FindOrCreate(db.Where("name = ?", "x").Where("nosuch > ?", 1), &Tag{})
			require.Error(t, err)
			assert.False(t, safefind.IsRetryable(err))
			assert.Len(t, r.Statements(), 1, "one SELECT, no retry")
			assert.EqualValues(t, 0, e.count(t, &Tag{}))
		})
		t.Run("a value the field cannot take", func(t *testing.T) {
			_, err := safefind.FindOrCreate(e.db, &Member{}, map[string]any{"org_id": "not a number", "email": "x"})
			require.Error(t, err)
			assert.EqualValues(t, 0, e.count(t, &Member{}))
		})
	})
}

func TestInitialize(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		assert.Equal(t, "safefind", e.plugin.Name())
		// A second Initialize registers nothing twice: one SAVEPOINT still
		// counts once.
		require.NoError(t, e.plugin.Initialize(e.db))
		require.ErrorIs(t, e.db.Use(safefind.New()), gorm.ErrRegistered)
		before := e.plugin.Stats().Savepoints
		require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
			return tx.Transaction(func(*gorm.DB) error { return nil })
		}))
		assert.EqualValues(t, 1, e.plugin.Stats().Savepoints-before)
	})
}

func TestUnsupportedDialect(t *testing.T) {
	e := open(t, "sqlite")
	db, err := gorm.Open(renamed{e.db.Dialector, "oracle"}, &gorm.Config{})
	require.NoError(t, err)
	require.ErrorIs(t, db.Use(safefind.New()), safefind.ErrUnsupportedDialect)
}

type renamed struct {
	gorm.Dialector
	name string
}

func (r renamed) Name() string { return r.name }

// A conflict whose row cannot be found: here the conflict is on a second
// unique column the lookup does not cover. Bounded retries, then a clear
// error that wraps the database's duplicate-key error where there is one.
func TestConflictNotFound(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				e.reset(t, &Member{})
				require.NoError(t, e.other.Create(&Member{OrgID: 1, Email: "a@x", Handle: "taken"}).Error)
				before := e.plugin.Stats()
				db, r := e.recorded(e.db)
				m := Member{Handle: "taken"}
				created, err := o.fn(db, &m, Member{OrgID: 2, Email: "b@x"})
				require.ErrorIs(t, err, safefind.ErrConflictNotFound)
				assert.False(t, created)
				assert.False(t, safefind.IsRetryable(err))
				assert.Contains(t, err.Error(), "3 attempts")
				if o.name == "FindOrCreate" || e.name == "mysql" {
					assert.ErrorIs(t, err, gorm.ErrDuplicatedKey, "wraps the database's error: %v", err)
				}
				after := e.plugin.Stats()
				assert.EqualValues(t, 2, after.Retries-before.Retries)
				assert.EqualValues(t, 3, after.Conflicts-before.Conflicts)
				assert.LessOrEqual(t, len(r.Statements()), 7, "bounded: %v", r.Statements())
				assert.EqualValues(t, 1, e.count(t, &Member{}))
			})
		}
	})
}

// A soft-deleted row holds the unique key: the lookup cannot see it.
func TestSoftDeletedConflict(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Account{})
		a := Account{Email: "gone@x"}
		require.NoError(t, e.other.Create(&a).Error)
		require.NoError(t, e.other.Delete(&a).Error)
		for _, o := range ops {
			_, err := o.fn(e.db, &Account{}, Account{Email: "gone@x"})
			require.ErrorIs(t, err, safefind.ErrConflictNotFound, o.name)
		}
	})
}

func TestHooksRunOnlyForCreatedRows(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Account{})
		for i, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				var hooks atomic.Int64
				db := e.db.WithContext(context.WithValue(context.Background(), hookKey{}, &hooks))
				email := fmt.Sprintf("h%d@x", i)

				created, err := o.fn(db, &Account{Plan: "free"}, Account{Email: email})
				require.NoError(t, err)
				require.True(t, created)
				assert.EqualValues(t, 1, hooks.Load(), "AfterCreate runs for the created row")

				created, err = o.fn(db, &Account{}, Account{Email: email})
				require.NoError(t, err)
				require.False(t, created)

				race := "race" + email
				winner := withInject(db.Statement.Context, func() {
					require.NoError(t, e.other.Create(&Account{Email: race}).Error)
				})
				created, err = o.fn(db.WithContext(winner), &Account{}, Account{Email: race})
				require.NoError(t, err)
				require.False(t, created)
				assert.EqualValues(t, 1, hooks.Load(), "no AfterCreate for a row that was found")
			})
		}
	})
}

// The winner's row is deleted between the caller's conflicting INSERT and its
// read: the INSERT is tried again and creates the row. (CreateOrFind on
// PostgreSQL inserts and reads in one statement, with no moment between
// them: TestOneStatementSnapshot.)
func TestRetryAfterRowVanished(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			for _, inTx := range []bool{false, true} {
				if o.name == "CreateOrFind" && e.name == "postgres" {
					continue
				}
				if inTx && e.name != "postgres" {
					// MySQL/MariaDB: the failed INSERT holds a shared lock on the
					// winner's row until the transaction ends, so no one can
					// delete it meanwhile. SQLite: no other writer inside a
					// transaction.
					continue
				}
				t.Run(fmt.Sprintf("%s/tx=%v", o.name, inTx), func(t *testing.T) {
					e.reset(t, &Tag{})
					ctx := withInject(context.Background(), func() {
						require.NoError(t, e.other.Create(&Tag{Name: "vanishing"}).Error)
					})
					ctx = withAfterInsert(ctx, func() {
						require.NoError(t, e.other.Where("name = ?", "vanishing").Delete(&Tag{}).Error)
					})
					before := e.plugin.Stats()
					var tag Tag
					var created bool
					call := func(tx *gorm.DB) error {
						var err error
						created, err = o.fn(tx.WithContext(ctx), &tag, Tag{Name: "vanishing"})
						return err
					}
					if inTx {
						require.NoError(t, e.db.Transaction(call))
					} else {
						require.NoError(t, call(e.db))
					}
					assert.True(t, created)
					after := e.plugin.Stats()
					assert.EqualValues(t, 1, after.Retries-before.Retries)
					assert.EqualValues(t, 1, after.Conflicts-before.Conflicts)
					var stored Tag
					require.NoError(t, e.other.Where("name = ?", "vanishing").First(&stored).Error)
					assert.Equal(t, stored, tag)
				})
			}
		}
	})
}

// WithConflictRetries bounds the INSERTs tried after a conflict whose row is gone.
func TestWithConflictRetries(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Member{})
		require.NoError(t, e.other.Create(&Member{OrgID: 1, Email: "a@x", Handle: "taken"}).Error)
		db, err := gorm.Open(e.db.Dialector, &gorm.Config{Logger: e.db.Logger})
		require.NoError(t, err)
		p := safefind.New(safefind.WithConflictRetries(0))
		require.NoError(t, db.Use(p))
		_, err = safefind.CreateOrFind(db, &Member{Handle: "taken"}, Member{OrgID: 2, Email: "b@x"})
		require.ErrorIs(t, err, safefind.ErrConflictNotFound)
		assert.Contains(t, err.Error(), "1 attempts")
		assert.EqualValues(t, 0, p.Stats().Retries)
	})
}

// CreateOrFind on PostgreSQL inserts or reads in one statement. A winner
// that commits while the statement's INSERT waits on its row is not in the
// statement's snapshot: the statement returns nothing, and runs again,
// counted as a retry, which reads the winner's row.
func TestOneStatementSnapshot(t *testing.T) {
	e := open(t, "postgres")
	e.reset(t, &Tag{})
	before := e.plugin.Stats()
	res, r := e.behindWinner(t, &Tag{Name: "late"}, func(db *gorm.DB, dest *Tag) (bool, error) {
		return safefind.CreateOrFind(db, dest, Tag{Name: "late"})
	})
	require.NoError(t, res.err)
	assert.False(t, res.created)
	var stored Tag
	require.NoError(t, e.other.Where("name = ?", "late").First(&stored).Error)
	assert.Equal(t, stored, res.tag, "the winner's row")
	after := e.plugin.Stats()
	assert.EqualValues(t, 1, after.Retries-before.Retries, "the statement ran again")
	stmts := r.Statements()
	require.Len(t, stmts, 2, "%q", stmts)
	for _, s := range stmts {
		assert.True(t, strings.HasPrefix(s, "WITH ins AS (INSERT"), s)
	}
}

// CreateOrFind with Assign inside a PostgreSQL transaction is one WITH
// query: an INSERT that skips conflicts and an UPDATE of the lookup's row
// when it inserted none. A winner that commits while the INSERT waits on
// its row is not in the statement's snapshot: the UPDATE finds nothing,
// and the call reads the winner's row and updates it, as after a conflict.
func TestUpsertWithSnapshot(t *testing.T) {
	e := open(t, "postgres")
	e.reset(t, &Tag{})
	late := Tag{Name: "late", Note: "winner's"}
	res, r := e.behindWinner(t, &late, func(db *gorm.DB, dest *Tag) (created bool, err error) {
		err = db.Transaction(func(tx *gorm.DB) error {
			created, err = safefind.CreateOrFind(tx.Where(&Tag{Name: "late"}).Assign(Tag{Note: "assigned"}), dest)
			return err
		})
		return created, err
	})
	require.NoError(t, res.err)
	assert.False(t, res.created)
	assert.Equal(t, Tag{ID: late.ID, Name: "late", Note: "assigned"}, res.tag)
	var stored Tag
	require.NoError(t, e.other.Where("name = ?", "late").First(&stored).Error)
	assert.Equal(t, res.tag, stored, "the winner's row, updated")
	assert.Equal(t, []string{"BEGIN", "WITH", "SELECT", "UPDATE", "COMMIT"}, kinds(r.Statements()))

	// Without a race: one statement, on a row that exists and on a new one.
	for _, name := range []string{"late", "new"} {
		db, r := e.recorded(e.db)
		var dest Tag
		var created bool
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			var err error
			created, err = safefind.CreateOrFind(tx.Where(&Tag{Name: name}).Assign(Tag{Note: "again"}), &dest)
			return err
		}))
		assert.Equal(t, name == "new", created)
		var stored Tag
		require.NoError(t, e.other.Where("name = ?", name).First(&stored).Error)
		assert.Equal(t, stored, dest)
		assert.Equal(t, "again", stored.Note)
		assert.Equal(t, []string{"BEGIN", "WITH", "COMMIT"}, kinds(r.Statements()), name)
	}
}

// snapshotResult is what a call made behind a winner returned.
type snapshotResult struct {
	tag     Tag
	created bool
	err     error
}

// behindWinner creates winner in a transaction of another connection, runs
// call on a recorded DB while that transaction is open, commits it once
// call's WITH query waits on the winner's row, and returns what call
// returned, with the recorder of what it sent.
func (e *env) behindWinner(t *testing.T, winner *Tag, call func(db *gorm.DB, dest *Tag) (bool, error)) (snapshotResult, *Recorder) {
	t.Helper()
	tx := e.other.Begin()
	require.NoError(t, tx.Error)
	defer tx.Rollback()
	require.NoError(t, tx.Create(winner).Error)
	done := make(chan snapshotResult, 1)
	db, r := e.recorded(e.db)
	go func() {
		var res snapshotResult
		res.created, res.err = call(db, &res.tag)
		done <- res
	}()
	waitOnWinner(t, e)
	require.NoError(t, tx.Commit().Error)
	return <-done, r
}

// waitOnWinner waits until a WITH query's INSERT into tags waits on a lock:
// on a winner's uncommitted row.
func waitOnWinner(t *testing.T, e *env) {
	t.Helper()
	require.Eventually(t, func() bool {
		var waiting int64
		require.NoError(t, e.other.Raw(`SELECT COUNT(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE 'WITH ins AS (INSERT INTO "tags"%'`).Scan(&waiting).Error)
		return waiting > 0
	}, 10*time.Second, 5*time.Millisecond)
}
