package tests

import (
	"context"
	"strings"
	"sync"

	"github.com/safefind/safefind/tests/internal/driverrec"
)

// The tests open their databases through driverrec's counting driver: every
// statement, BEGIN, COMMIT and ROLLBACK that reaches the database driver is
// recorded in the Recorder carried by the context it was sent with.

// Recorder holds what one unit of work sent to the database.
type Recorder struct {
	mu    sync.Mutex
	stmts []string
}

func withRecorder(ctx context.Context, r *Recorder) context.Context {
	return driverrec.WithSink(ctx, r)
}

// Record implements driverrec.Sink.
func (r *Recorder) Record(sql string) {
	r.mu.Lock()
	r.stmts = append(r.stmts, sql)
	r.mu.Unlock()
}

// Statements returns every statement recorded, BEGIN/COMMIT/ROLLBACK included.
func (r *Recorder) Statements() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.stmts...)
}

// Savepoints counts the SAVEPOINT statements recorded.
func (r *Recorder) Savepoints() int {
	n := 0
	for _, s := range r.Statements() {
		if strings.HasPrefix(strings.ToUpper(s), "SAVEPOINT ") {
			n++
		}
	}
	return n
}

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.stmts = nil
	r.mu.Unlock()
}
