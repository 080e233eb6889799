package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// events collects what an observer receives.
type events struct {
	mu   sync.Mutex
	list []safefind.Event
	ctxs []context.Context
}

func (ev *events) observe(ctx context.Context, e safefind.Event) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.list = append(ev.list, e)
	ev.ctxs = append(ev.ctxs, ctx)
}

// take returns the events so far, as "op kind table rows", and forgets them.
func (ev *events) take(t *testing.T) []string {
	t.Helper()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []string
	for _, e := range ev.list {
		s := fmt.Sprintf("%s %s %s %d", e.Op, e.Kind, e.Table, e.Rows)
		if e.Err != nil {
			s += " error"
		}
		out = append(out, s)
		assert.GreaterOrEqual(t, e.Duration.Nanoseconds(), int64(0))
	}
	ev.list, ev.ctxs = nil, nil
	return out
}

type probeKey struct{}

// Every outcome reaches the observer, with its call, table, rows, duration
// and error, on the caller's context; the savepoints too where there are
// any. Stats agree.
func TestObserver(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev := &events{}
			e := open(t, name, safefind.WithObserver(ev.observe))
			e.reset(t, &Tag{})
			pg := e.name == "postgres"

			for _, inTx := range []bool{false, true} {
				// run runs fn on e.db, or in a transaction on it.
				run := func(fn func(db *gorm.DB)) {
					if !inTx {
						fn(e.db)
						return
					}
					require.NoError(t, e.db.Transaction(func(tx *gorm.DB) error { fn(tx); return nil }))
				}
				sp := func(kinds ...string) []string { // savepoint events, PostgreSQL in a transaction only
					if !pg || !inTx {
						return nil
					}
					out := make([]string, len(kinds))
					for i, k := range kinds {
						out[i] = "FindOrCreate " + k + " tags 0"
					}
					return out
				}
				key := fmt.Sprintf("k-%v", inTx)
				t.Run(fmt.Sprintf("inTx=%v", inTx), func(t *testing.T) {
					ctx := context.WithValue(context.Background(), probeKey{}, key)
					run(func(db *gorm.DB) {
						_, err := safefind.FindOrCreate(db.WithContext(ctx), &Tag{}, Tag{Name: key})
						require.NoError(t, err)
					})
					assert.Equal(t, append(sp("savepoint", "savepoint released"), "FindOrCreate created tags 1"), ev.take(t))

					run(func(db *gorm.DB) {
						_, err := safefind.FindOrCreate(db.WithContext(ctx), &Tag{}, Tag{Name: key})
						require.NoError(t, err)
						ev.mu.Lock()
						require.Len(t, ev.ctxs, 1)
						assert.Equal(t, key, ev.ctxs[0].Value(probeKey{}), "the observer gets the caller's context")
						ev.mu.Unlock()
					})
					assert.Equal(t, []string{"FindOrCreate found tags 1"}, ev.take(t))

					// A lost race. A SQLite transaction holds the write lock: no
					// one else can win a race against it.
					if name != "sqlite" || !inTx {
						lost := key + "-lost"
						race := withInject(ctx, func() { require.NoError(t, e.other.Create(&Tag{Name: lost}).Error) })
						run(func(db *gorm.DB) {
							_, err := safefind.FindOrCreate(db.WithContext(race), &Tag{}, Tag{Name: lost})
							require.NoError(t, err)
						})
						assert.Equal(t, append(sp("savepoint", "savepoint rolled back"), "FindOrCreate conflict tags 1", "FindOrCreate found tags 1"), ev.take(t))
					}

					run(func(db *gorm.DB) {
						created, err := safefind.CreateOrFind(db, &Tag{}, Tag{Name: key + "-new"})
						require.NoError(t, err)
						require.True(t, created)
					})
					assert.Equal(t, []string{"CreateOrFind created tags 1"}, ev.take(t), "CreateOrFind opens no savepoint")

					rows := []Tag{{Name: key}, {Name: key + "-b1"}, {Name: key + "-b2"}}
					run(func(db *gorm.DB) {
						_, err := safefind.FindOrCreateAll(db, &rows, "name")
						require.NoError(t, err)
					})
					assert.Equal(t, []string{"FindOrCreateAll found tags 1", "FindOrCreateAll created tags 2"}, ev.take(t))

					run(func(db *gorm.DB) {
						_, err := safefind.FindOrCreate(db, &Tag{}, Tag{})
						require.ErrorIs(t, err, safefind.ErrNoConditions)
					})
					got := ev.take(t)
					require.Len(t, got, 1)
					assert.True(t, strings.HasPrefix(got[0], "FindOrCreate failed"), got[0])
					assert.True(t, strings.HasSuffix(got[0], " error"), got[0])
				})
			}
			s := e.plugin.Stats()
			s.TrackedTransactions = 0 // until the collector has run
			races := int64(2)
			if name == "sqlite" {
				races = 1
			}
			assert.Equal(t, safefind.Stats{Savepoints: s.Savepoints, Found: 4 + races, Created: 8, Conflicts: races}, s)
			if pg {
				assert.Equal(t, int64(2), s.Savepoints)
			} else {
				assert.Zero(t, s.Savepoints)
			}
		})
	}
}
