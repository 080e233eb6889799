package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/safefind/safefind"
	"github.com/safefind/safefind/tests/internal/dbopen"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A 3-node MariaDB Galera cluster (scripts/galera starts it). Every node
// takes writes. Two transactions inserting one key on two nodes do not see
// each other's locks: both succeed locally, and the one certified second
// fails at COMMIT with 1213, a certification failure, not with a duplicate
// key. safefind sends the INSERT again after a 1213 outside a transaction;
// inside one, the 1213 is the caller's to retry, with RetryTransaction.

// galeraEnv holds the DSNs of the cluster's nodes, separated by spaces.
const galeraEnv = "SAFEFIND_GALERA_DSNS"

// galeraNode is one node of the cluster: env's db has the plugin, other
// has not; synced reads only after the node has applied every write the
// cluster committed before (wsrep_sync_wait).
type galeraNode struct {
	*env
	synced *gorm.DB
}

func openGalera(t *testing.T) []*galeraNode {
	t.Helper()
	dsns := strings.Fields(dsnOrSkip(t, galeraEnv))
	require.Len(t, dsns, 3, "%s holds the DSNs of the three nodes", galeraEnv)
	nodes := make([]*galeraNode, len(dsns))
	for i, dsn := range dsns {
		e := openDSN(t, "mysql", dsn)
		cfg, err := gomysql.ParseDSN(dsn)
		require.NoError(t, err)
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params["wsrep_sync_wait"] = "1"
		synced, err := dbopen.Open("mysql", cfg.FormatDSN(), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := synced.DB(); err == nil {
				s.Close()
			}
		})
		nodes[i] = &galeraNode{env: e, synced: synced}
	}
	return nodes
}

// resetGalera recreates the table tags, and waits until every node has it.
func resetGalera(t *testing.T, nodes []*galeraNode) {
	t.Helper()
	nodes[0].reset(t, &Tag{})
	for _, n := range nodes {
		require.NoError(t, n.synced.Model(&Tag{}).Count(new(int64)).Error)
	}
}

// rowsOn returns every tag on node n, once it has applied every write.
func rowsOn(t *testing.T, n *galeraNode) []Tag {
	t.Helper()
	var rows []Tag
	require.NoError(t, n.synced.Order("name").Find(&rows).Error)
	return rows
}

// The cluster behaves as the issue describes: without safefind, two
// transactions on two nodes both insert one key, and the one committed
// second fails with 1213 at COMMIT.
func TestGaleraCertificationFailure(t *testing.T) {
	nodes := openGalera(t)
	resetGalera(t, nodes)
	second := nodes[1].other.Begin()
	require.NoError(t, second.Error)
	defer second.Rollback()
	first := nodes[0].other.Begin()
	require.NoError(t, first.Error)
	defer first.Rollback()

	require.NoError(t, second.Create(&Tag{Name: "k", Note: "node 2"}).Error, "node 2 inserts k locally")
	require.NoError(t, first.Create(&Tag{Name: "k", Note: "node 1"}).Error, "node 1 inserts k locally too: no lock spans nodes")
	require.NoError(t, first.Commit().Error)
	err := second.Commit().Error
	var me *gomysql.MySQLError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, uint16(1213), me.Number, "a certification failure, not a duplicate key: %v", err)
	assert.True(t, safefind.IsRetryable(err))
	for i, n := range nodes {
		rows := rowsOn(t, n)
		require.Len(t, rows, 1, "node %d", i+1)
		assert.Equal(t, "node 1", rows[0].Note, "node %d", i+1)
	}
}

// Inside the caller's transaction the certification failure comes at
// COMMIT; RetryTransaction runs the transaction again, which then finds the
// winner's row. The winner commits on another node right after safefind's
// INSERT succeeded locally, so the failure is certain.
func TestGaleraRetryTransaction(t *testing.T) {
	nodes := openGalera(t)
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			resetGalera(t, nodes)
			winner := Tag{Name: "k", Note: "node 2"}
			ctx := withAfterInsert(context.Background(), func() {
				require.NoError(t, nodes[1].other.Create(&winner).Error)
			})
			attempts := 0
			var (
				tag     Tag
				created bool
				errs    []error
			)
			err := safefind.RetryTransaction(nodes[0].db.WithContext(ctx), func(tx *gorm.DB) error {
				attempts++
				tag = Tag{Note: "node 1"}
				var err error
				created, err = o.fn(tx, &tag, Tag{Name: "k"})
				if err != nil {
					errs = append(errs, err)
				}
				return err
			})
			require.NoError(t, err)
			assert.Equal(t, 2, attempts, "the first attempt failed certification")
			assert.Empty(t, errs, "the call itself succeeded; COMMIT failed")
			assert.False(t, created)
			assert.Equal(t, winner, tag)
			for i, n := range nodes {
				assert.Equal(t, []Tag{winner}, rowsOn(t, n), "node %d", i+1)
			}
		})
	}
}

// Goroutines spread over the three nodes, released together on the same
// keys, bare and in RetryTransaction: no error, exactly one row per key on
// every node, and every caller holds that row. Certification failures are
// not certain in one round; rounds repeat, on new keys, until the nodes
// count at least one (up to 20 rounds), and every round is checked.
func TestGaleraConcurrent(t *testing.T) {
	const keys, perNode = 4, 4
	nodes := openGalera(t)
	var attempts atomic.Int64 // transactions run by RetryTransaction
	inTx := func(fn func(*gorm.DB, any, ...any) (bool, error)) func(*gorm.DB, any, ...any) (bool, error) {
		return func(db *gorm.DB, dest any, conds ...any) (created bool, err error) {
			err = safefind.RetryTransaction(db, func(tx *gorm.DB) error {
				attempts.Add(1)
				created, err = fn(tx, dest, conds...)
				return err
			})
			return created, err
		}
	}
	for _, o := range []op{
		{"FindOrCreate", safefind.FindOrCreate},
		{"CreateOrFind", safefind.CreateOrFind},
		{"FindOrCreate in RetryTransaction", inTx(safefind.FindOrCreate)},
		{"CreateOrFind in RetryTransaction", inTx(safefind.CreateOrFind)},
	} {
		t.Run(o.name, func(t *testing.T) {
			resetGalera(t, nodes)
			bare := !strings.Contains(o.name, "RetryTransaction")
			statsBefore := make([]safefind.Stats, len(nodes))
			for i, n := range nodes {
				statsBefore[i] = n.plugin.Stats()
			}
			attempts.Store(0)
			calls := int64(0)
			// conflicts counts, by the nodes' own statistics, the
			// transactions that failed certification or were aborted by a
			// replicated one.
			conflictsBefore := galeraConflicts(t, nodes)
			conflicts := func() int64 { return galeraConflicts(t, nodes) - conflictsBefore }
			retried := func() (n int64) {
				if !bare {
					return attempts.Load() - calls
				}
				for i, node := range nodes {
					n += node.plugin.Stats().Retries - statsBefore[i].Retries
				}
				return n
			}
			for round := 0; round < 20; round++ {
				var (
					mu      sync.Mutex
					ids     = map[string]map[uint]int{}
					created = map[string]int{}
					errs    []error
				)
				callers := len(nodes) * perNode * keys
				calls += int64(callers)
				release(callers, func(i int) {
					node := nodes[i%len(nodes)]
					key := fmt.Sprintf("round %d key %d", round, i/len(nodes)%keys)
					var tag Tag
					isNew, err := o.fn(node.db, &tag, Tag{Name: key})
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					if ids[key] == nil {
						ids[key] = map[uint]int{}
					}
					ids[key][tag.ID]++
					if isNew {
						created[key]++
					}
				})
				require.Empty(t, errs, "round %d: %v", round, errors.Join(errs...))
				var want []Tag
				for i, n := range nodes {
					var rows []Tag
					require.NoError(t, n.synced.Where("name LIKE ?", fmt.Sprintf("round %d %%", round)).Order("name").Find(&rows).Error)
					require.Len(t, rows, keys, "round %d: one row per key on node %d", round, i+1)
					if i == 0 {
						want = rows
					}
					assert.Equal(t, want, rows, "round %d: node %d has the same rows as node 1", round, i+1)
				}
				for _, row := range want {
					assert.Equal(t, map[uint]int{row.ID: callers / keys}, ids[row.Name], "round %d: every caller of %q holds its row", round, row.Name)
					assert.Equal(t, 1, created[row.Name], "round %d: one caller of %q created it", round, row.Name)
				}
				if conflicts() > 0 {
					t.Logf("%d round(s): %d certification failures or aborts; %d retries", round+1, conflicts(), retried())
					return
				}
			}
			t.Fatal("no certification failure in 20 rounds: the race did not happen")
		})
	}
}

// galeraConflicts sums, over the nodes, the transactions that failed
// certification and those a replicated transaction aborted.
func galeraConflicts(t *testing.T, nodes []*galeraNode) int64 {
	t.Helper()
	var sum int64
	for _, n := range nodes {
		for _, name := range []string{"wsrep_local_cert_failures", "wsrep_local_bf_aborts"} {
			var key string
			var v int64
			require.NoError(t, n.other.Raw("SHOW GLOBAL STATUS LIKE ?", name).Row().Scan(&key, &v))
			sum += v
		}
	}
	return sum
}
