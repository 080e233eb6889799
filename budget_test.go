package safefind

import "testing"

// The savepoints a transaction keeps: opened and not rolled back, released
// or not; a savepoint re-established by ROLLBACK TO counts again once
// something writes in it.
func TestSavepointTracking(t *testing.T) {
	for _, tc := range []struct {
		stmts []string
		kept  int
		open  int
	}{
		{[]string{"SAVEPOINT a", "SAVEPOINT b"}, 2, 2},
		{[]string{"SAVEPOINT a", "RELEASE SAVEPOINT a"}, 1, 0},
		{[]string{"SAVEPOINT a", "ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a"}, 0, 0},
		{[]string{"SAVEPOINT a", "SAVEPOINT b", "ROLLBACK TO SAVEPOINT a"}, 0, 1},
		{[]string{"SAVEPOINT a", "ROLLBACK TO SAVEPOINT a", "INSERT INTO t VALUES (1)"}, 1, 1},
		{[]string{"SAVEPOINT a", "ROLLBACK TO SAVEPOINT a", "SELECT 1"}, 0, 1},
		{[]string{"SAVEPOINT a", "ROLLBACK TO SAVEPOINT a", "SELECT * FROM t FOR UPDATE"}, 1, 1},
		{[]string{"SAVEPOINT a", "SAVEPOINT a", "RELEASE a"}, 2, 1},
		{[]string{"RELEASE SAVEPOINT nosuch", "ROLLBACK TO nosuch"}, 0, 0},
	} {
		st := &txState{}
		for _, sql := range tc.stmts {
			st.track(sql, isControl(sql))
		}
		unkept := 0
		for _, sp := range st.open {
			if !sp.kept {
				unkept++
			}
		}
		if st.unkept != unkept {
			t.Errorf("%q: unkept %d, want %d", tc.stmts, st.unkept, unkept)
		}
		if st.kept != tc.kept || len(st.open) != tc.open {
			t.Errorf("%q: kept %d, open %d; want %d, %d", tc.stmts, st.kept, len(st.open), tc.kept, tc.open)
		}
	}
}
