package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/safefind/safefind"
	"github.com/safefind/safefind/dialect"
	"gorm.io/gorm"
)

// What an error is: a lock error by class and where it met the caller,
// a duplicate-key error, a wrong result.

// lockClass is what a retryable error is, for the report's block of lock
// errors.
type lockClass int

const (
	deadlock      lockClass = iota // PostgreSQL 40P01, MySQL/MariaDB 1213
	serialization                  // PostgreSQL 40001
	lockTimeout                    // MySQL/MariaDB 1205
	otherLock                      // MariaDB 1020, ErrStaleSnapshot, SQLite busy, a failed COMMIT
	nClasses
)

var (
	classNames  = [nClasses]string{"deadlock (40P01, 1213)", "serialization (40001)", "lock wait timeout (1205)", "other retryable"}
	classPlural = [nClasses]string{"deadlocks", "serializations", "lock wait timeouts", "other retryable"}
)

// site is where a retryable error met the caller.
type site int

const (
	bareSingle site = iota // a bare FindOrCreate or CreateOrFind returned it
	bareBatch              // a bare FindOrCreateAll, CreateOrFindAll or UpsertAll returned it
	txRetried              // an attempt failed with it, and RetryTransaction ran the transaction again
	txEscaped              // the last attempt failed with it: the attempts ran out
	nSites
)

var siteNames = [nSites]string{"bare single", "bare batch", "tx retried", "tx escaped"}

// classify counts an error that reached the caller, from a call of kind k
// at st (bare, or the last attempt of a transaction): a retryable one (the
// retries ran out, or a bare call), the context's end, a duplicate-key
// error, or any other error. ErrConflictNotFound wraps the duplicate-key
// error, and is counted as not retryable.
func (s *soak) classify(where string, st site, k kind, err error) {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		s.cancelled.Add(1)
		s.note(fmt.Sprintf("%s: cut off at the end of the grace period: %v", where, err))
	case safefind.IsRetryable(err):
		s.escaped.Add(1)
		s.countLock(where, st, k, err)
		s.mu.Lock()
		if s.firstEscaped == "" {
			s.firstEscaped = fmt.Sprintf("%s: %v", where, err)
		}
		s.mu.Unlock()
	case errors.Is(err, safefind.ErrConflictNotFound):
		s.conflictNF.Add(1)
		s.nonRetryable.Add(1)
		s.nonRetryableBy[k].Add(1)
		s.note(fmt.Sprintf("%s: %v", where, err))
	case s.isDuplicate(err):
		s.dupErrors.Add(1)
		s.note(fmt.Sprintf("%s: duplicate-key error: %v", where, err))
	default:
		s.nonRetryable.Add(1)
		s.nonRetryableBy[k].Add(1)
		s.note(fmt.Sprintf("%s: %v", where, err))
	}
}

// isDuplicate recognises a unique violation with or without TranslateError,
// through the dialector's translator.
func (s *soak) isDuplicate(err error) bool {
	t, _ := s.db.Dialector.(gorm.ErrorTranslator)
	return dialect.Walk(err, func(e error) bool {
		return errors.Is(e, gorm.ErrDuplicatedKey) || (t != nil && errors.Is(t.Translate(e), gorm.ErrDuplicatedKey))
	})
}

// lockClassOf tells what a retryable error is; nil (a transaction whose
// COMMIT failed, its error unseen) is otherLock.
func lockClassOf(err error) lockClass {
	var (
		pe *pgconn.PgError
		me *mysql.MySQLError
	)
	switch {
	case errors.As(err, &pe):
		switch pe.Code {
		case "40P01":
			return deadlock
		case "40001":
			return serialization
		}
	case errors.As(err, &me):
		switch me.Number {
		case 1213:
			return deadlock
		case 1205:
			return lockTimeout
		}
	}
	return otherLock
}

// countLock counts a retryable error of a call of kind k (or atCommit) at
// st, in the report's block of lock errors. A bare batch call's deadlock is
// a failure, noted with where.
func (s *soak) countLock(where string, st site, k kind, err error) {
	class := lockClassOf(err)
	s.lockErrors[class][st].Add(1)
	s.lockBy[class][k].Add(1)
	if class == deadlock && st == bareBatch {
		s.note(fmt.Sprintf("%s: deadlock in a bare batch call: %v", where, err))
	}
}

// retryCause counts a retryable error a call returned, by its code, and
// the deadlocks in ordered work (a bare call, or an ordered transaction).
func (s *soak) retryCause(err error, ordered bool) {
	var (
		pe    *pgconn.PgError
		me    *mysql.MySQLError
		se    sqlite3.Error
		cause = "other"
	)
	if ordered && lockClassOf(err) == deadlock {
		s.orderedDeadlocks.Add(1)
	}
	switch {
	case errors.Is(err, safefind.ErrStaleSnapshot):
		cause = "ErrStaleSnapshot"
	case errors.As(err, &pe):
		cause = "postgres " + pe.Code
	case errors.As(err, &me):
		cause = fmt.Sprintf("mysql %d", me.Number)
	case errors.As(err, &se):
		cause = "sqlite " + se.Code.Error()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.causes == nil {
		s.causes = map[string]int64{}
	}
	s.causes[cause]++
}

func (s *soak) wrong(msg string) {
	s.wrongRows.Add(1)
	s.note("wrong row: " + msg)
}

// note keeps the first few messages for the report.
func (s *soak) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.notes) < 8 {
		s.notes = append(s.notes, strings.ReplaceAll(msg, "\n", " | "))
	}
}
