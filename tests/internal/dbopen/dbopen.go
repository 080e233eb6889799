// Package dbopen opens the databases that the commands under tests/cmd run
// against, by kind ("sqlite", "postgres", "mysql") and DSN, with the DSNs of
// PostgreSQL and MySQL/MariaDB taken by default from the same environment
// variables as the tests.
package dbopen

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"github.com/safefind/safefind/tests/internal/driverrec"

	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// The environment variables that hold the DSNs of the servers, as in the
// tests and CI (see the README).
const (
	PostgresEnv = "SAFEFIND_POSTGRES_DSN"
	MySQLEnv    = "SAFEFIND_MYSQL_DSN"

	// The replicas of those servers' test databases (scripts/replicas):
	// a PostgreSQL hot standby and a MariaDB replica.
	PostgresReplicaEnv = "SAFEFIND_POSTGRES_REPLICA_DSN"
	MySQLReplicaEnv    = "SAFEFIND_MYSQL_REPLICA_DSN"
)

// Kinds are the database kinds Open accepts.
var Kinds = []string{"sqlite", "postgres", "mysql"}

// EnvDSN returns the DSN of kind from its environment variable: "" for
// sqlite, which has none, and for a variable that is unset.
func EnvDSN(kind string) string {
	switch kind {
	case "postgres":
		return os.Getenv(PostgresEnv)
	case "mysql":
		return os.Getenv(MySQLEnv)
	}
	return ""
}

// Open opens dsn with the GORM dialector of kind: mattn/go-sqlite3 for
// sqlite (dsn is a file name or URI), pgx for postgres, go-sql-driver for
// mysql.
func Open(kind, dsn string, cfg *gorm.Config) (*gorm.DB, error) {
	var d gorm.Dialector
	switch kind {
	case "sqlite":
		d = sqlite.Open(dsn)
	case "postgres":
		d = postgres.Open(dsn)
	case "mysql":
		d = mysql.Open(dsn)
	default:
		return nil, fmt.Errorf("dbopen: unknown database %q (want one of %v)", kind, Kinds)
	}
	db, err := gorm.Open(d, cfg)
	if err != nil {
		return nil, fmt.Errorf("dbopen: open %s: %w", kind, err)
	}
	return db, nil
}

// Counted opens dsn as Open does, through a connector whose connections
// report every statement to the driverrec.Sink of the context it runs
// with. The *sql.DB is the caller's to configure and close.
func Counted(kind, dsn string, cfg *gorm.Config) (*gorm.DB, *sql.DB, error) {
	var (
		connector driver.Connector
		dialector func(*sql.DB) gorm.Dialector
	)
	switch kind {
	case "sqlite":
		connector = driverrec.FromDSN(dsn, &sqlite3.SQLiteDriver{})
		dialector = func(db *sql.DB) gorm.Dialector { return &sqlite.Dialector{Conn: db} }
	case "postgres":
		c, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("dbopen: %w", err)
		}
		connector = stdlib.GetConnector(*c)
		dialector = func(db *sql.DB) gorm.Dialector { return postgres.New(postgres.Config{Conn: db}) }
	case "mysql":
		c, err := gomysql.ParseDSN(dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("dbopen: %w", err)
		}
		if connector, err = gomysql.NewConnector(c); err != nil {
			return nil, nil, fmt.Errorf("dbopen: %w", err)
		}
		// The parsed DSN too, as mysql.Open keeps it: safefind reads its
		// clientFoundRows.
		dialector = func(db *sql.DB) gorm.Dialector { return mysql.New(mysql.Config{Conn: db, DSNConfig: c}) }
	default:
		return nil, nil, fmt.Errorf("dbopen: unknown database %q (want one of %v)", kind, Kinds)
	}
	sqlDB := sql.OpenDB(driverrec.Wrap(connector))
	db, err := gorm.Open(dialector(sqlDB), cfg)
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("dbopen: open %s: %w", kind, err)
	}
	return db, sqlDB, nil
}
