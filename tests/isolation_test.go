package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// A REPEATABLE READ transaction took its snapshot before the winner
// committed. MySQL/MariaDB: the locking read returns the winner's row.
// PostgreSQL: the row cannot be seen from that snapshot, so the error is
// retryable, never "not found", and retrying the transaction finds the row.
func TestRepeatableReadSnapshot(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		if e.name == "sqlite" {
			t.Skip("SQLite transactions hold the write lock from BEGIN: no other writer commits meanwhile")
		}
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				e.reset(t, &Tag{})
				var winner Tag
				var got Tag
				var created bool
				rr := &sql.TxOptions{Isolation: sql.LevelRepeatableRead}
				var usable error
				err := e.db.Transaction(func(tx *gorm.DB) error {
					// Take the snapshot now.
					require.NoError(t, tx.Find(&[]Tag{}).Error)
					winner = Tag{Name: "rr", Note: "winner"}
					require.NoError(t, e.other.Create(&winner).Error)
					var err error
					created, err = o.fn(tx, &got, Tag{Name: "rr"})
					usable = tx.Exec("SELECT 1").Error
					return err
				}, rr)
				assert.False(t, created)
				switch e.name {
				case "mysql":
					require.NoError(t, err)
					assert.Equal(t, winner, got)
				case "postgres":
					require.Error(t, err)
					assert.True(t, safefind.IsRetryable(err), "%v", err)
					assert.NotErrorIs(t, err, gorm.ErrRecordNotFound)
					if o.name == "FindOrCreate" {
						assert.ErrorIs(t, err, safefind.ErrStaleSnapshot)
						assert.NoError(t, usable, "the savepoint kept the transaction usable")
					} else {
						var pgErr *pgconn.PgError
						require.ErrorAs(t, err, &pgErr)
						assert.Equal(t, "40001", pgErr.Code)
					}
					// The retry, in a new transaction, sees the row.
					require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error {
						created, err = o.fn(tx, &got, Tag{Name: "rr"})
						return err
					}, rr))
					assert.False(t, created)
					assert.Equal(t, winner, got)
				}
				assert.EqualValues(t, 1, e.count(t, &Tag{}))
			})
		}
	})
}

type TagUpdate struct {
	ID    uint
	TagID uint
}

// No path writes to an existing row: an UPDATE trigger on the table never
// fires. The control shows the trigger does fire on an UPDATE, and, on
// MySQL/MariaDB, on ON DUPLICATE KEY UPDATE with a no-op assignment, which
// is why safefind does not use it.
func TestNoUpdateTrigger(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &TagUpdate{}, &Tag{})
		switch e.name {
		case "postgres":
			require.NoError(t, e.other.Exec(`CREATE OR REPLACE FUNCTION log_tag_update() RETURNS trigger AS $$
				BEGIN INSERT INTO tag_updates(tag_id) VALUES (OLD.id); RETURN NEW; END $$ LANGUAGE plpgsql`).Error)
			require.NoError(t, e.other.Exec(`CREATE TRIGGER tags_updated BEFORE UPDATE ON tags
				FOR EACH ROW EXECUTE FUNCTION log_tag_update()`).Error)
		case "mysql":
			require.NoError(t, e.other.Exec(`CREATE TRIGGER tags_updated BEFORE UPDATE ON tags
				FOR EACH ROW INSERT INTO tag_updates(tag_id) VALUES (OLD.id)`).Error)
		case "sqlite":
			require.NoError(t, e.other.Exec(`CREATE TRIGGER tags_updated BEFORE UPDATE ON tags
				BEGIN INSERT INTO tag_updates(tag_id) VALUES (OLD.id); END`).Error)
		}
		require.NoError(t, e.other.Create(&Tag{Name: "exists"}).Error)

		for _, o := range ops {
			for _, inTx := range []bool{false, true} {
				call := func(db *gorm.DB, key string) {
					winner := withInject(context.Background(), func() {
						require.NoError(t, e.other.Create(&Tag{Name: key}).Error)
					})
					run := func(tx *gorm.DB) error {
						if _, err := o.fn(tx, &Tag{}, Tag{Name: "exists"}); err != nil {
							return err
						}
						if inTx && e.name == "sqlite" {
							return nil // no other writer can win inside a SQLite transaction
						}
						created, err := o.fn(tx.WithContext(winner), &Tag{}, Tag{Name: key})
						assert.False(t, created)
						return err
					}
					if inTx {
						require.NoError(t, db.Transaction(run))
					} else {
						require.NoError(t, run(db))
					}
				}
				// Keys after "exists": on MySQL/MariaDB the duplicate-key check
				// of the first call holds a next-key lock on the gap before
				// "exists" until the transaction ends.
				call(e.db, fmt.Sprintf("z-%s-%v", o.name, inTx))
			}
		}
		for _, o := range batchOps {
			for _, inTx := range []bool{false, true} {
				rows := []Tag{{Name: "exists"}, {Name: fmt.Sprintf("z-%s-%v", o.name, inTx)}}
				run := func(tx *gorm.DB) error {
					created, err := o.fn(tx, &rows, "name")
					assert.Equal(t, []bool{false, true}, created)
					return err
				}
				require.NoError(t, e.run(inTx, run))
			}
		}
		assert.EqualValues(t, 0, e.count(t, &TagUpdate{}), "no UPDATE trigger fired")

		// Control: the trigger is live.
		require.NoError(t, e.other.Model(&Tag{}).Where("name = ?", "exists").Update("note", "x").Error)
		assert.EqualValues(t, 1, e.count(t, &TagUpdate{}))
		if e.name == "mysql" {
			require.NoError(t, e.other.Exec("INSERT INTO tags (name, note) VALUES ('exists', '') ON DUPLICATE KEY UPDATE id = id").Error)
			assert.EqualValues(t, 2, e.count(t, &TagUpdate{}), "ON DUPLICATE KEY UPDATE id = id fires the UPDATE trigger")
		}
	})
}

// The caller's locking clause is used by the lookup and by the read after a
// lost race, and the lock is really held.
func TestLockingClause(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		require.NoError(t, e.other.Create(&Tag{Name: "locked"}).Error)
		forUpdate := clause.Locking{Strength: clause.LockingStrengthUpdate}
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				r := &Recorder{}
				ctx := withRecorder(context.Background(), r)
				tx := e.db.WithContext(ctx).Begin()
				require.NoError(t, tx.Error)
				defer tx.Rollback()
				var got Tag
				_, err := o.fn(tx.Clauses(forUpdate), &got, Tag{Name: "locked"})
				require.NoError(t, err)
				require.Equal(t, "locked", got.Name)
				reads := selects(r.Statements())
				require.NotEmpty(t, reads)
				if e.name == "sqlite" {
					// SQLite has no row locks; GORM drops the clause.
					assert.NotContains(t, reads[len(reads)-1], "FOR")
					return
				}
				assert.True(t, strings.HasSuffix(reads[len(reads)-1], "FOR UPDATE"), "%q", reads)

				// Another session cannot take the row while tx holds it.
				nowait := clause.Locking{Strength: clause.LockingStrengthUpdate, Options: clause.LockingOptionsNoWait}
				otherTx := e.other.Begin()
				require.NoError(t, otherTx.Error)
				err = otherTx.Clauses(nowait).Where("name = ?", "locked").Find(&[]Tag{}).Error
				otherTx.Rollback()
				assert.Error(t, err, "the row is locked by the caller's transaction")

				// After a lost race, the read uses the caller's lock, not the
				// dialect's. On MySQL/MariaDB the caller's locking read that
				// misses holds a gap lock, so no other writer can win there:
				// the read after a conflict is shown with DryRun instead.
				r.Reset()
				key := "race-" + o.name
				q := tx.Clauses(forUpdate)
				if e.name == "mysql" {
					log := &sqlLog{Interface: e.db.Logger}
					q = q.Session(&gorm.Session{DryRun: true, Logger: log})
					_, err := o.fn(q, &Tag{}, Tag{Name: key})
					require.NoError(t, err)
					dry := log.statements()
					assert.True(t, strings.HasSuffix(dry[len(dry)-1], "FOR UPDATE"), "%q", dry)
					return
				}
				winner := withInject(ctx, func() { require.NoError(t, e.other.Create(&Tag{Name: key}).Error) })
				created, err := o.fn(q.WithContext(winner), &got, Tag{Name: key})
				require.NoError(t, err)
				assert.False(t, created)
				reads = selects(r.Statements())
				assert.True(t, strings.HasSuffix(reads[len(reads)-1], "FOR UPDATE"), "%q", reads)
			})
		}
	})
}

func selects(stmts []string) []string {
	var out []string
	for _, s := range stmts {
		if strings.HasPrefix(s, "SELECT") {
			out = append(out, s)
		}
	}
	return out
}

func TestIsRetryable(t *testing.T) {
	gormWrapped := func(err error) error { return fmt.Errorf("%v; %w", errors.New("earlier"), err) }
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "55P03"}, false},
		{&gomysql.MySQLError{Number: 1213}, true},
		{&gomysql.MySQLError{Number: 1205}, true},
		{&gomysql.MySQLError{Number: 1020}, true},
		{&gomysql.MySQLError{Number: 1062}, false},
		{sqlite3.Error{Code: sqlite3.ErrBusy}, true},
		{sqlite3.Error{Code: sqlite3.ErrBusy, ExtendedCode: sqlite3.ErrBusySnapshot}, true},
		{sqlite3.Error{Code: sqlite3.ErrLocked}, true},
		{sqlite3.Error{Code: sqlite3.ErrConstraint, ExtendedCode: sqlite3.ErrConstraintUnique}, false},
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "40001"}), true},
		{gormWrapped(&gomysql.MySQLError{Number: 1213}), true},
		{errors.Join(errors.New("a"), sqlite3.Error{Code: sqlite3.ErrBusy}), true},
		{fmt.Errorf("x: %w", safefind.ErrStaleSnapshot), true},
		{safefind.ErrConflictNotFound, false},
		{context.Canceled, false},
		{gorm.ErrDuplicatedKey, false},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, safefind.IsRetryable(c.err), "%#v", c.err)
	}
}
