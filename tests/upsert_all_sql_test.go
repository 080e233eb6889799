package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// AliasUpdate records the firings of an UPDATE trigger on aliases.
type AliasUpdate struct {
	ID      uint
	AliasID uint
}

// createUpdateTrigger creates a trigger that records every UPDATE of a
// row of table into alias_updates.
func createUpdateTrigger(t *testing.T, e *env, table string) {
	t.Helper()
	switch e.name {
	case "postgres":
		require.NoError(t, e.other.Exec(`CREATE OR REPLACE FUNCTION log_alias_update() RETURNS trigger AS $$
			BEGIN INSERT INTO alias_updates(alias_id) VALUES (OLD.id); RETURN NEW; END $$ LANGUAGE plpgsql`).Error)
		require.NoError(t, e.other.Exec(`CREATE TRIGGER `+table+`_updated BEFORE UPDATE ON `+table+`
			FOR EACH ROW EXECUTE FUNCTION log_alias_update()`).Error)
	case "mysql":
		require.NoError(t, e.other.Exec(`CREATE TRIGGER `+table+`_updated BEFORE UPDATE ON `+table+`
			FOR EACH ROW INSERT INTO alias_updates(alias_id) VALUES (OLD.id)`).Error)
	case "sqlite":
		require.NoError(t, e.other.Exec(`CREATE TRIGGER `+table+`_updated BEFORE UPDATE ON `+table+`
			BEGIN INSERT INTO alias_updates(alias_id) VALUES (OLD.id); END`).Error)
	}
}

// A row whose values are already the ones given is not rewritten: on
// PostgreSQL and SQLite no UPDATE trigger fires; on MySQL/MariaDB, as the
// documentation says, the trigger fires for every row met, but the row
// keeps its values and its UpdatedAt everywhere.
func TestUpsertAllUnchangedRows(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &AliasUpdate{}, &Alias{})
		createUpdateTrigger(t, e, "aliases")
		past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		seed := []Alias{
			{AliasName: "a", ModelID: 1, IsActive: true, Weight: 3, CreatedAt: past, UpdatedAt: past},
			{AliasName: "b", ModelID: 2, Weight: 4, CreatedAt: past, UpdatedAt: past},
		}
		require.NoError(t, e.other.Create(&seed).Error)
		rows := []Alias{{AliasName: "b", ModelID: 2, Weight: 4}, {AliasName: "a", ModelID: 1, IsActive: true, Weight: 3}}
		for _, inTx := range []bool{false, true} {
			var created []bool
			err := e.run(inTx, func(tx *gorm.DB) error {
				var err error
				created, err = safefind.UpsertAll(tx, &rows, []string{"alias_name"})
				return err
			})
			require.NoError(t, err)
			assert.Equal(t, []bool{false, false}, created)
			assert.Equal(t, seed[1].ID, rows[0].ID)
			assert.Equal(t, seed[0].ID, rows[1].ID)
		}
		fired := e.count(t, &AliasUpdate{})
		if e.name == "mysql" {
			assert.EqualValues(t, 4, fired, "MySQL/MariaDB fire the UPDATE trigger of every row ON DUPLICATE KEY UPDATE meets")
		} else {
			assert.Zero(t, fired, "no UPDATE trigger fired")
		}
		for _, s := range storedAliases(t, e.other) {
			assert.True(t, s.UpdatedAt.Equal(past), "%s: UpdatedAt unchanged: %v", s.AliasName, s.UpdatedAt)
		}

		// The control: a change fires it, and moves UpdatedAt.
		rows = []Alias{{AliasName: "a", ModelID: 9}}
		_, err := safefind.UpsertAll(e.db, &rows, []string{"alias_name"}, "model_id")
		require.NoError(t, err)
		assert.EqualValues(t, fired+1, e.count(t, &AliasUpdate{}))
		assert.True(t, storedAliases(t, e.other)["a"].UpdatedAt.After(past))
	})
}

// A trigger created after a batch call is seen by the next one: on
// MySQL/MariaDB the batches insert through a no-op upsert only on a table
// without UPDATE triggers, read from the catalog on every call.
func TestBatchUpdateTriggerCreatedLater(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &AliasUpdate{}, &Alias{})
		require.NoError(t, e.other.Create(&Alias{AliasName: "exists"}).Error)
		for _, o := range batchOps {
			rows := []Alias{{AliasName: "exists"}, {AliasName: "new-" + o.name}}
			created, err := o.fn(e.db, &rows, "alias_name")
			require.NoError(t, err)
			assert.Equal(t, []bool{false, true}, created)
		}
		createUpdateTrigger(t, e, "aliases")
		for _, o := range batchOps {
			for _, inTx := range []bool{false, true} {
				rows := []Alias{{AliasName: "exists"}, {AliasName: "later-" + o.name + map[bool]string{true: "-tx"}[inTx]}}
				run := func(tx *gorm.DB) error {
					created, err := o.fn(tx, &rows, "alias_name")
					assert.Equal(t, []bool{false, true}, created)
					return err
				}
				require.NoError(t, e.run(inTx, run))
			}
		}
		assert.Zero(t, e.count(t, &AliasUpdate{}), "no UPDATE trigger fired")
	})
}

// A row that holds another unique key than the batch's is never changed:
// the upsert fails, and leaves nothing behind.
func TestUpsertAllOtherUniqueKey(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Member{})
		seed := []Member{{OrgID: 1, Email: "a@x", Handle: "ha", Age: 1}, {OrgID: 1, Email: "b@x", Handle: "hb", Age: 2}}
		require.NoError(t, e.other.Create(&seed).Error)
		cases := map[string][]Member{
			// a takes b's handle: MySQL/MariaDB meet a by its key, and the
			// update fails on the handle.
			"existing key": {{OrgID: 1, Email: "c@x", Handle: "hc", Age: 30}, {OrgID: 1, Email: "a@x", Handle: "hb", Age: 10}},
			// d is new but has b's handle: MySQL/MariaDB meet b by it, and
			// the guard keeps b as it was.
			"new key": {{OrgID: 1, Email: "c@x", Handle: "hc", Age: 30}, {OrgID: 1, Email: "d@x", Handle: "hb", Age: 10}},
		}
		for name, in := range cases {
			for _, inTx := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/tx=%v", name, inTx), func(t *testing.T) {
					otherUniqueKey(t, e, seed, append([]Member(nil), in...), inTx, name == "new key")
				})
			}
		}
	})
}

// otherUniqueKey upserts rows, whose update meets another unique key
// (metOther: only that key, which MySQL/MariaDB then meet a row by), and
// checks that the call fails and leaves the table as seeded.
func otherUniqueKey(t *testing.T, e *env, seed, rows []Member, inTx, metOther bool) {
	keys := []string{"OrgID", "Email"} // field names outside a transaction, column names inside
	if inTx {
		keys = []string{"org_id", "email"}
	}
	err := e.run(inTx, func(tx *gorm.DB) error {
		_, err := safefind.UpsertAll(tx, &rows, keys)
		return err
	})
	require.Error(t, err)
	t.Log(err)
	if e.name == "mysql" && metOther {
		assert.ErrorIs(t, err, safefind.ErrConflictNotFound)
	}
	var stored []Member
	require.NoError(t, e.other.Order("email").Find(&stored).Error)
	assert.Equal(t, seed, stored, "nothing written, the other row untouched")
}

// The SQL of UpsertAll, per dialect, rendered with DryRun: the upsert of
// the rows in key order, then the read of the rows it did not return.
func TestUpsertAllGoldenSQL(t *testing.T) {
	golden := map[string][]string{
		"sqlite": {
			"DELETE FROM `tags` WHERE 1 = 0",
			"SELECT `id` FROM `tags` WHERE `tags`.`name` IN (\"a\",\"b\")",
			"INSERT INTO `tags` (`name`,`note`) VALUES (\"a\",\"x\"),(\"b\",\"y\") ON CONFLICT (`name`) DO UPDATE SET `note`=`excluded`.`note` WHERE ((`tags`.`note` IS NOT `excluded`.`note`))  RETURNING *",
			"SELECT * FROM `tags` WHERE `tags`.`name` IN (\"a\",\"b\")",
		},
		"postgres": {
			`INSERT INTO "tags" ("name","note") VALUES ('a','x'),('b','y') ON CONFLICT ("name") DO UPDATE SET "note"="excluded"."note" ` +
				`WHERE (("tags"."note" IS DISTINCT FROM "excluded"."note"))  RETURNING *,(xmax = 0)`,
			`SELECT * FROM "tags" WHERE "tags"."name" IN ('a','b')`,
		},
		"mysql": {
			"INSERT INTO `tags` (`name`,`note`) VALUES ('a','x'),('b','y') ON DUPLICATE KEY UPDATE " +
				"`name`=IF((@sf_met := CONCAT_WS(':', '<nonce>', IF((`name` <=> VALUES(`name`)), 'k', 'o'), HEX(`id`))) IS NULL, `name`, `name`)," +
				"`note`=IF((`name` <=> VALUES(`name`)), VALUES(`note`), `note`) " +
				"RETURNING *, CASE @sf_met WHEN CONCAT_WS(':', '<nonce>', 'k', HEX(`id`)) THEN 1 WHEN CONCAT_WS(':', '<nonce>', 'o', HEX(`id`)) THEN 2 ELSE 0 END",
			"SELECT * FROM `tags` WHERE `tags`.`name` IN ('a','b') LOCK IN SHARE MODE",
		},
	}
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Tag{})
		dry, log, r := e.dryRunInTx(t)
		rows := []Tag{{Name: "b", Note: "y"}, {Name: "a", Note: "x"}}
		created, err := safefind.UpsertAll(dry, &rows, []string{"name"})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, false}, created)
		want := golden[e.name]
		if e.name == "mysql" && !strings.Contains(serverVersion(t, e), "MariaDB") {
			t.Skip("MySQL 8: no RETURNING; the listed path")
		}
		assert.Equal(t, want, withoutNonces(log.statements()))
		assert.Equal(t, []string{"BEGIN"}, r.Statements(), "DryRun sends nothing")
		assert.Equal(t, []Tag{{Name: "b", Note: "y"}, {Name: "a", Note: "x"}}, rows, "DryRun leaves the rows alone")
	})
}

// A soft-deleted row holds its key, but the lookup cannot find it: the
// upsert neither updates nor returns it, and the call fails, as the other
// calls do; Unscoped finds and updates it. Account has an AfterCreate hook,
// so the call runs in a transaction of its own and leaves nothing behind.
func TestUpsertAllSoftDeleted(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Account{})
		gone := Account{Email: "gone@x", Plan: "free"}
		require.NoError(t, e.other.Create(&[]Account{gone, {Email: "live@x", Plan: "free"}}).Error)
		require.NoError(t, e.other.Where("email = ?", "gone@x").Delete(&Account{}).Error)
		rows := []Account{{Email: "live@x", Plan: "pro"}, {Email: "gone@x", Plan: "pro"}, {Email: "new@x", Plan: "pro"}}
		_, err := safefind.UpsertAll(e.db, &rows, []string{"email"}, "plan")
		require.ErrorIs(t, err, safefind.ErrConflictNotFound)
		t.Log(err)
		var stored []Account
		require.NoError(t, e.other.Unscoped().Order("email").Find(&stored).Error)
		require.Len(t, stored, 2, "nothing written")
		for _, a := range stored {
			assert.Equal(t, "free", a.Plan, a.Email)
		}

		rows = []Account{{Email: "gone@x", Plan: "pro"}}
		created, err := safefind.UpsertAll(e.db.Unscoped(), &rows, []string{"email"}, "plan")
		require.NoError(t, err)
		assert.Equal(t, []bool{false}, created)
		assert.Equal(t, "pro", rows[0].Plan)
		assert.True(t, rows[0].DeletedAt.Valid, "the deleted row, as Unscoped finds it")
	})
}
