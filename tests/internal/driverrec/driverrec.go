// Package driverrec wraps a database/sql driver so that every statement,
// BEGIN, COMMIT and ROLLBACK that reaches it is reported to the Sink carried
// by the context it was sent with. It sees what really goes to the server,
// independently of the code under test, and work that runs side by side
// never mixes its counts.
package driverrec

import (
	"context"
	"database/sql/driver"
	"strings"
)

// Sink receives what one unit of work sends to the database: each
// statement's SQL, and "BEGIN", "COMMIT", "ROLLBACK". It must be safe for
// concurrent use.
type Sink interface{ Record(sql string) }

type sinkKey struct{}

// WithSink returns a copy of ctx whose statements are reported to s.
func WithSink(ctx context.Context, s Sink) context.Context {
	return context.WithValue(ctx, sinkKey{}, s)
}

func record(ctx context.Context, sql string) {
	if s, ok := ctx.Value(sinkKey{}).(Sink); ok {
		s.Record(strings.TrimSpace(sql))
	}
}

// Wrap returns a connector whose connections report to the context's Sink.
func Wrap(c driver.Connector) driver.Connector { return countingConnector{c} }

// FromDSN turns a driver.Driver without a Connector into one.
func FromDSN(dsn string, d driver.Driver) driver.Connector { return dsnConnector{dsn, d} }

type countingConnector struct{ driver.Connector }

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn}, nil
}

// dsnConnector turns a driver.Driver without a Connector into one.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

type countingConn struct{ driver.Conn }

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	record(ctx, "BEGIN")
	b, ok := c.Conn.(driver.ConnBeginTx)
	if !ok {
		tx, err := c.Conn.Begin() //nolint:staticcheck // fallback for old drivers
		return countingTx{tx, ctx}, err
	}
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return countingTx{tx, ctx}, nil
}

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip {
		record(ctx, query)
	}
	return res, err
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		record(ctx, query)
	}
	return rows, err
}

func (c *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var (
		st  driver.Stmt
		err error
	)
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &countingStmt{st, query}, nil
}

func (c *countingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *countingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type countingTx struct {
	driver.Tx
	ctx context.Context
}

func (t countingTx) Commit() error {
	record(t.ctx, "COMMIT")
	return t.Tx.Commit()
}

func (t countingTx) Rollback() error {
	record(t.ctx, "ROLLBACK")
	return t.Tx.Rollback()
}

type countingStmt struct {
	driver.Stmt
	query string
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	record(ctx, s.query)
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	return nil, driver.ErrSkip
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	record(ctx, s.query)
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	return nil, driver.ErrSkip
}

func (s *countingStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
