package tests

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Probe counts its create hooks.
type Probe struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
}

type probeHooksKey struct{}

func (p *Probe) BeforeCreate(tx *gorm.DB) error {
	countInto(tx, probeHooksKey{})
	return nil
}

// TestRefusalRunsNoHook: a statement the plugin refuses (here a transaction
// past its savepoint budget, in error mode) is refused before any of GORM's
// create steps, so no BeforeCreate hook runs for a row that is never
// written.
func TestRefusalRunsNoHook(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := open(t, name, safefind.WithSavepointBudget(1), safefind.WithSavepointBudgetError())
			e.reset(t, &Probe{})
			var hooks atomic.Int64
			tx := e.db.WithContext(context.WithValue(context.Background(), probeHooksKey{}, &hooks)).Begin()
			require.NoError(t, tx.Error)
			defer tx.Rollback()
			require.NoError(t, tx.Exec("SAVEPOINT a").Error)
			require.ErrorIs(t, tx.Exec("SAVEPOINT b").Error, safefind.ErrSavepointBudget)

			require.ErrorIs(t, tx.Create(&Probe{Name: "create"}).Error, safefind.ErrSavepointBudget)
			_, err := safefind.CreateOrFind(tx, &Probe{}, Probe{Name: "create-or-find"})
			require.ErrorIs(t, err, safefind.ErrSavepointBudget)
			_, err = safefind.CreateOrFindAll(tx, &[]Probe{{Name: "batch"}}, "name")
			require.ErrorIs(t, err, safefind.ErrSavepointBudget)
			assert.Zero(t, hooks.Load(), "no BeforeCreate hook ran")
		})
	}
}

// TestSkippedBeforeAssociations: when safefind's INSERT skips a row on a
// conflict, the row's hooks are suppressed before GORM saves the row's
// associations, so that nothing after the INSERT treats the row as created.
func TestSkippedBeforeAssociations(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		e.reset(t, &Probe{})
		require.NoError(t, e.other.Create(&Probe{Name: "taken"}).Error)
		save := e.db.Callback().Create().Get("gorm:save_after_associations")
		require.NotNil(t, save)
		var (
			mu   sync.Mutex
			seen []bool // SkipHooks of each skipped Probe INSERT, as associations are saved
		)
		require.NoError(t, e.db.Callback().Create().Replace("gorm:save_after_associations", func(db *gorm.DB) {
			if db.Error == nil && db.Statement.Table == "probes" && db.RowsAffected == 0 {
				mu.Lock()
				seen = append(seen, db.Statement.SkipHooks)
				mu.Unlock()
			}
			save(db)
		}))

		var p Probe
		created, err := safefind.CreateOrFind(e.db, &p, Probe{Name: "taken"})
		require.NoError(t, err)
		assert.False(t, created)
		assert.NotZero(t, p.ID)
		if e.name == "mysql" {
			// No INSERT skips a row there: the plain INSERT fails on the
			// duplicate, and nothing after it runs.
			assert.Empty(t, seen)
			return
		}
		assert.Equal(t, []bool{true}, seen, "hooks were suppressed before the associations were saved")
	})
}
