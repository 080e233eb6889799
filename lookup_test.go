package safefind

import (
	"testing"
	"time"

	"gorm.io/gorm/clause"
)

func TestParseEqualities(t *testing.T) {
	col := func(table, name string) clause.Column { return clause.Column{Table: table, Name: name} }
	cases := []struct {
		sql  string
		vars []any
		want []pair
	}{
		{"email = ?", []any{"a"}, []pair{{col("", "email"), "a"}}},
		{"  email=?  ", []any{"a"}, []pair{{col("", "email"), "a"}}},
		{"org_id = ? AND email = ?", []any{1, "a"}, []pair{{col("", "org_id"), 1}, {col("", "email"), "a"}}},
		{"org_id = ?\n\tand email = ?", []any{1, "a"}, []pair{{col("", "org_id"), 1}, {col("", "email"), "a"}}},
		{`"users"."email" = ?`, []any{"a"}, []pair{{col("users", "email"), "a"}}},
		{"`users`.`email` = ?", []any{"a"}, []pair{{col("users", "email"), "a"}}},
		{"users.email = ?", []any{"a"}, []pair{{col("users", "email"), "a"}}},
		{"email = ?", []any{[]byte("a")}, []pair{{col("", "email"), []byte("a")}}},

		{"email = ?", nil, nil},                         // a placeholder without a value
		{"email = ?", []any{"a", "b"}, nil},             // a value without a placeholder
		{"email = ?", []any{[]string{"a"}}, nil},        // a list is IN, not =
		{"email = ?", []any{nil}, nil},                  // = NULL matches nothing
		{"email = ? OR name = ?", []any{"a", "b"}, nil}, // OR
		{"email > ?", []any{"a"}, nil},                  // a range
		{"email >= ?", []any{"a"}, nil},                 // not an equality
		{"lower(email) = ?", []any{"a"}, nil},           // an expression
		{"email = 'a'", nil, nil},                       // a literal
		{"email = @email", []any{"a"}, nil},             // a named argument
		{"a.b.c = ?", []any{1}, nil},                    // too many qualifiers
		{`"email = ?`, []any{1}, nil},                   // unbalanced quote
		{"1email = ?", []any{1}, nil},                   // not an identifier
		{"email = ? AND", []any{1}, nil},                // dangling AND
		{"email = ? ANDname = ?", []any{1, 2}, nil},     // AND is a word
		{"brand = ? AND band = ?", []any{1, 2}, []pair{{col("", "brand"), 1}, {col("", "band"), 2}}},
		{"", nil, nil},
	}
	for _, c := range cases {
		got := parseEqualities(c.sql, c.vars)
		if len(got) != len(c.want) {
			t.Errorf("parseEqualities(%q, %v) = %v, want %v", c.sql, c.vars, got, c.want)
			continue
		}
		for i := range got {
			if got[i].col != c.want[i].col || !equalValue(got[i].value, c.want[i].value) {
				t.Errorf("parseEqualities(%q, %v)[%d] = %v, want %v", c.sql, c.vars, i, got[i], c.want[i])
			}
		}
	}
}

func equalValue(a, b any) bool {
	if ab, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && string(ab) == string(bb)
	}
	return a == b
}

func TestIsSavepoint(t *testing.T) {
	for sql, want := range map[string]bool{
		"SAVEPOINT sp1":           true,
		"  savepoint x":           true,
		"RELEASE SAVEPOINT x":     false,
		"ROLLBACK TO SAVEPOINT x": false,
		"SELECT 'SAVEPOINT x'":    false,
		"SAVEPOINTS":              false,
		"":                        false,
	} {
		if got := isSavepoint(sql); got != want {
			t.Errorf("isSavepoint(%q) = %v, want %v", sql, got, want)
		}
	}
}

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

// A condition's value and the value its field stores after GORM set it:
// equal as the database compares them, or changed on the way in.
func TestStoredAsGiven(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		stored, given any
		want          bool
	}{
		{int64(5), 5, true},
		{int64(5), "5", true},
		{int64(7), 7.0, true},
		{5.0, 5, true},
		{"5", 5, true},
		{"1.5", "1.50", true},
		{[]byte("go"), []byte("go"), true},
		{at, at, true},
		{at, "2026-01-02 03:04:05", true},
		{true, true, true},
		{int64(1), 1.5, false},
		{"2", 1.5, false},
		{uint64(18446744073709551615), -1, false},
		{int64(8), "010", false},
		{int64(16), "0x10", false},
		{"go", []byte("go"), false},
		{[]byte("go"), "go", false},
	} {
		if got := storedAsGiven(tc.stored, tc.given); got != tc.want {
			t.Errorf("storedAsGiven(%#v, %#v) = %v, want %v", tc.stored, tc.given, got, tc.want)
		}
	}
}

// The backoff grows from base, stays within max, and is 0 when base is.
func TestBackoff(t *testing.T) {
	c := retryConfig{base: 10 * time.Millisecond, max: time.Second}
	for attempt := 1; attempt < 100; attempt++ {
		ceiling := min(time.Second, 10*time.Millisecond<<min(attempt-1, 20))
		for range 20 {
			if d := c.backoff(attempt); d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	if d := (retryConfig{base: 0, max: time.Second}).backoff(3); d != 0 {
		t.Errorf("base 0: %v", d)
	}
	if d := (retryConfig{base: time.Hour, max: time.Hour}).backoff(80); d > time.Hour {
		t.Errorf("no overflow: %v", d)
	}
}
