package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// restartEnv turns on TestServerRestart. It stops the shared servers, so it
// runs alone: CI runs it after the other tests, in a go test of its own.
const restartEnv = "SAFEFIND_RESTART_TEST"

// mariadbPidFile is where the MariaDB on 3306 writes its pid (Debian's
// default), which tells it from other mariadbd on the machine.
const mariadbPidFile = "/run/mysqld/mysqld.pid"

// The database server restarts while goroutines find or create on a shared
// set of keys, bare and in RetryTransaction. Calls fail only during the
// outage: once a goroutine has succeeded after the server came back, it
// never fails again. Afterwards the table holds exactly one row per key,
// every row a call reported as created is there, and every call that
// returned a key's row returned the same id.
func TestServerRestart(t *testing.T) {
	if os.Getenv(restartEnv) == "" {
		t.Skipf("stops the database servers: set %s=1 to run it, alone (.ci/run does)", restartEnv)
	}
	for _, name := range []string{"postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			e := open(t, name)
			e.reset(t, &Tag{})
			restart, up := serverControl(t, name)
			t.Cleanup(func() { up() }) // whatever happened, leave the server running

			const workers, keys, perPhase = 8, 64, 20
			var (
				phase   atomic.Int32 // 0 before, 1 restarting, 2 back up
				stop    atomic.Bool
				idsMu   sync.Mutex
				ids     = map[string]uint{} // key -> the id every call returned
				created []uint
				wrong   []string
				calls   [workers]struct{ before, after atomic.Int64 }
				errsMu  sync.Mutex
				badErrs []string // errors outside the outage
				outage  atomic.Int64
			)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					backAfterRestart := false
					for n := 0; !stop.Load(); n++ {
						key := fmt.Sprintf("key-%d", rand.IntN(keys))
						var tag Tag
						var isNew bool
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						fn := safefind.FindOrCreate
						if n%2 == 1 {
							fn = safefind.CreateOrFind
						}
						var err error
						if n%3 == 0 {
							err = safefind.RetryTransaction(e.db.WithContext(ctx), func(tx *gorm.DB) error {
								tag = Tag{}
								var err error
								isNew, err = fn(tx, &tag, Tag{Name: key})
								return err
							}, safefind.RetryBackoff(time.Millisecond, 10*time.Millisecond))
						} else {
							isNew, err = fn(e.db.WithContext(ctx), &tag, Tag{Name: key})
						}
						cancel()
						p := phase.Load()
						if err != nil {
							if p == 1 || p == 2 && !backAfterRestart {
								outage.Add(1)
								continue
							}
							errsMu.Lock()
							badErrs = append(badErrs, fmt.Sprintf("worker %d, phase %d: %v", w, p, err))
							errsMu.Unlock()
							continue
						}
						idsMu.Lock()
						if tag.Name != key || tag.ID == 0 {
							wrong = append(wrong, fmt.Sprintf("%s: got %+v", key, tag))
						} else if id, ok := ids[key]; ok && id != tag.ID {
							wrong = append(wrong, fmt.Sprintf("%s: id %d, earlier %d", key, tag.ID, id))
						} else {
							ids[key] = tag.ID
						}
						if isNew {
							created = append(created, tag.ID)
						}
						idsMu.Unlock()
						switch p {
						case 0:
							calls[w].before.Add(1)
						case 2:
							backAfterRestart = true
							calls[w].after.Add(1)
						}
					}
				}()
			}
			waitWorkers := func(what string, count func(w int) int64) {
				waitFor(t, what, func() bool {
					for w := range workers {
						if count(w) < perPhase {
							return false
						}
					}
					return true
				})
			}
			waitWorkers("calls before the restart", func(w int) int64 { return calls[w].before.Load() })
			phase.Store(1)
			restart()
			phase.Store(2)
			waitWorkers("calls after the restart", func(w int) int64 { return calls[w].after.Load() })
			stop.Store(true)
			wg.Wait()

			t.Logf("%d calls failed during the outage", outage.Load())
			assert.Empty(t, badErrs, "errors outside the outage")
			assert.Empty(t, wrong, "wrong rows")
			var rows []Tag
			require.NoError(t, e.other.Find(&rows).Error)
			byName := map[string]uint{}
			byID := map[uint]string{}
			for _, r := range rows {
				_, dup := byName[r.Name]
				assert.False(t, dup, "two rows for %s", r.Name)
				byName[r.Name], byID[r.ID] = r.ID, r.Name
			}
			for key, id := range ids {
				assert.Equal(t, id, byName[key], "the id calls returned for %s", key)
			}
			for _, id := range created {
				assert.Contains(t, byID, id, "a row reported created is there")
			}
		})
	}
}

// serverControl returns functions that restart the server and that start
// it if it is down, each returning once it accepts connections.
func serverControl(t *testing.T, name string) (restart, up func()) {
	run := func(name string, args ...string) error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
		}
		return nil
	}
	ready := func(name string, args ...string) {
		waitFor(t, "the server to accept connections", func() bool { return run(name, args...) == nil })
	}
	switch name {
	case "postgres":
		versions, err := filepath.Glob("/etc/postgresql/*")
		require.NoError(t, err)
		require.NotEmpty(t, versions)
		version := filepath.Base(versions[len(versions)-1])
		isReady := func() { ready("pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432") }
		return func() {
				require.NoError(t, run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"))
				isReady()
			}, func() {
				if run("pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432") != nil {
					_ = run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start")
				}
				isReady()
			}
	default:
		ping := []string{"-h", "127.0.0.1", "-u", "root", "ping"}
		start := func() {
			_ = run("install", "-d", "-o", "mysql", "-g", "mysql", "/run/mysqld")
			// By its pid file: other mariadbd (a replica, Galera nodes) may run.
			require.NoError(t, run("start-stop-daemon", "--start", "--oknodo", "--background",
				"--pidfile", mariadbPidFile, "--exec", "/usr/sbin/mariadbd"))
			ready("mariadb-admin", ping...)
		}
		return func() {
				pid, err := os.ReadFile(mariadbPidFile)
				require.NoError(t, err)
				require.NoError(t, run("mariadb-admin", "-h", "127.0.0.1", "-u", "root", "shutdown"))
				waitFor(t, "mariadbd to exit", func() bool {
					_, err := os.Stat("/proc/" + strings.TrimSpace(string(pid)))
					return os.IsNotExist(err)
				})
				start()
			}, func() {
				if run("mariadb-admin", ping...) != nil {
					start()
				}
			}
	}
}
