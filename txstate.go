package safefind

import (
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"gorm.io/gorm"
)

// Transactions the database ended. On MySQL/MariaDB a deadlock (or a Galera
// certification failure) rolls back the whole transaction, yet the
// connection stays open and runs every later statement in autocommit: code
// that carries on after the error would commit its writes one by one,
// outside any transaction. So once a statement of a transaction fails that
// way, safefind refuses every later statement on that transaction, its own
// and everyone else's, with ErrTransactionEnded, until the caller rolls back.
//
// The state of a transaction is keyed by a weak pointer to its *sql.Tx and
// dropped when the *sql.Tx is garbage collected: it never outlives the
// transaction, and concurrent transactions never share it.

// ErrTransactionEnded: the database rolled back the caller's transaction
// (a MySQL/MariaDB deadlock or Galera certification failure), so safefind
// refused a statement that the connection would have run in autocommit,
// outside the transaction. It wraps the error that ended the transaction,
// so [IsRetryable] reports true for it: roll back and run the whole
// transaction again, as [RetryTransaction] does.
var ErrTransactionEnded = errors.New("safefind: the database rolled back this transaction; roll back and retry it")

// txState is what safefind knows of one open transaction.
type txState struct {
	mu sync.Mutex
	// refuse, once set, is returned by every later statement of the
	// transaction: the database ended it, or a SAVEPOINT was refused.
	refuse error
	open   []savepoint // the open savepoints, innermost last
	kept   int         // savepoints that may hold a subtransaction id
	unkept int         // open savepoints re-established by ROLLBACK TO, not kept
	warned bool        // the budget warning was given
}

// txStates holds the state of the transactions that have one.
type txStates struct {
	m        sync.Map     // weak.Pointer[sql.Tx] -> *txState
	n        atomic.Int64 // entries, so that the common case costs one atomic load
	refusing atomic.Int64 // entries whose refuse is set: usually none
	unkept   atomic.Int64 // the entries' unkept savepoints: usually none
}

// txOf returns the *sql.Tx a statement runs on, or nil outside a
// transaction (or on a connection pool safefind does not know).
func txOf(stmt *gorm.Statement) *sql.Tx {
	switch pool := stmt.ConnPool.(type) {
	case *sql.Tx:
		return pool
	case *gorm.PreparedStmtTX:
		tx, _ := pool.Tx.(*sql.Tx)
		return tx
	}
	return nil
}

// get returns tx's state, creating it if create is set; nil if there is
// none.
func (s *txStates) get(tx *sql.Tx, create bool) *txState {
	if tx == nil || !create && s.n.Load() == 0 {
		return nil
	}
	key := weak.Make(tx)
	if v, ok := s.m.Load(key); ok {
		return v.(*txState)
	}
	if !create {
		return nil
	}
	v, loaded := s.m.LoadOrStore(key, &txState{})
	if !loaded {
		s.n.Add(1)
		runtime.AddCleanup(tx, func(key weak.Pointer[sql.Tx]) {
			if v, ok := s.m.LoadAndDelete(key); ok {
				st := v.(*txState)
				st.mu.Lock()
				if st.refuse != nil {
					s.refusing.Add(-1)
				}
				s.unkept.Add(int64(-st.unkept))
				st.mu.Unlock()
			}
			s.n.Add(-1)
		}, key)
	}
	return v.(*txState)
}

// setRefuse makes every later statement of the transaction fail with err.
func (s *txStates) setRefuse(st *txState, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refuse == nil {
		st.refuse = err
		s.refusing.Add(1)
	}
}

// refuseEnded refuses a statement on a transaction the database ended, or
// whose SAVEPOINT was refused.
func (p *Plugin) refuseEnded(db *gorm.DB) {
	if p.txs.refusing.Load() == 0 {
		return
	}
	st := p.txs.get(txOf(db.Statement), false)
	if st == nil {
		return
	}
	st.mu.Lock()
	refuse := st.refuse
	st.mu.Unlock()
	if refuse != nil {
		db.AddError(refuse)
	}
}

// refused reports whether err is one of the plugin's refusals: the
// statement was not sent.
func refused(err error) bool {
	return errors.Is(err, ErrTransactionEnded) || errors.Is(err, ErrSavepointBudget)
}

// noteEnded runs after every statement: it remembers that the database
// ended the statement's transaction.
func (p *Plugin) noteEnded(db *gorm.DB) {
	if db.Error == nil || refused(db.Error) {
		return
	}
	d := dialectOf(db)
	if d == nil || !d.EndsTx(db.Error) {
		return
	}
	if st := p.txs.get(txOf(db.Statement), true); st != nil {
		p.txs.setRefuse(st, fmt.Errorf("%w: %w", ErrTransactionEnded, db.Error))
	}
}
