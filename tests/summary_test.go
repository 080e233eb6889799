package tests

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/safefind/safefind/tests/internal/dbopen"
)

// The run's summary: one line at the end that says which databases the
// tests ran on, and which they skipped and why, so that a run without the
// servers' DSNs is not mistaken for one against them.
//
// go test shows a passing package's output only with -v or in local
// directory mode (cd tests && go test): `go test ./... ./tests/...` prints
// just "ok". So the line goes to the terminal, when the run has one, and
// to the test's output otherwise (CI, an IDE).

// databases records, by name, the databases the tests opened and those
// they skipped, with the reason.
var databases = struct {
	sync.Mutex
	ran     map[string]bool
	skipped map[string]string
}{ran: map[string]bool{}, skipped: map[string]string{}}

// databaseNames names the environment variables that hold each server's
// DSN.
var databaseNames = map[string]string{
	postgresEnv:               "PostgreSQL",
	mysqlEnv:                  "MySQL/MariaDB",
	dbopen.PostgresReplicaEnv: "the PostgreSQL replica",
	dbopen.MySQLReplicaEnv:    "the MariaDB replica",
	galeraEnv:                 "the Galera cluster",
	"sqlite":                  "SQLite",
}

// noteDatabase records that a test ran on the database of key (an
// environment variable, or "sqlite"), or skipped it for why.
func noteDatabase(key string, ran bool, why string) {
	name := databaseNames[key]
	if name == "" {
		name = key
	}
	databases.Lock()
	defer databases.Unlock()
	if ran {
		databases.ran[name] = true
	} else {
		databases.skipped[name] = why
	}
}

// databasesLine is the summary: "" when no test opened a database.
func databasesLine() string {
	databases.Lock()
	defer databases.Unlock()
	var ran, skipped []string
	for name := range databases.ran {
		ran = append(ran, name)
	}
	for name, why := range databases.skipped {
		if !databases.ran[name] {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", name, why))
		}
	}
	if len(ran) == 0 && len(skipped) == 0 {
		return ""
	}
	slices.Sort(ran)
	slices.Sort(skipped)
	line := "safefind tests ran on " + orNone(ran)
	if len(skipped) > 0 {
		line += "; skipped " + strings.Join(skipped, ", ")
	}
	return line
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "no database"
	}
	return strings.Join(names, ", ")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if line := databasesLine(); line != "" {
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			fmt.Fprintln(tty, line)
			tty.Close()
		} else {
			fmt.Println(line)
		}
	}
	os.Exit(code)
}

func TestDatabasesLine(t *testing.T) {
	databases.Lock()
	saved, savedSkipped := databases.ran, databases.skipped
	databases.ran, databases.skipped = map[string]bool{}, map[string]string{}
	databases.Unlock()
	t.Cleanup(func() {
		databases.Lock()
		databases.ran, databases.skipped = saved, savedSkipped
		databases.Unlock()
	})
	if got := databasesLine(); got != "" {
		t.Errorf("no database opened: %q", got)
	}
	noteDatabase("sqlite", true, "")
	noteDatabase(postgresEnv, false, postgresEnv+" is not set")
	noteDatabase(mysqlEnv, false, mysqlEnv+" is not set")
	noteDatabase(mysqlEnv, true, "") // another test had it
	want := "safefind tests ran on MySQL/MariaDB, SQLite; skipped PostgreSQL (SAFEFIND_POSTGRES_DSN is not set)"
	if got := databasesLine(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
