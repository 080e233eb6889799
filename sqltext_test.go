package safefind

import (
	"testing"

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

func TestParseColumn(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want clause.Column
		ok   bool
	}{
		{"email", clause.Column{Name: "email"}, true},
		{"_x9", clause.Column{Name: "_x9"}, true},
		{`"email"`, clause.Column{Name: "email"}, true},
		{"`email`", clause.Column{Name: "email"}, true},
		{"users.email", clause.Column{Table: "users", Name: "email"}, true},
		{`"users"."email"`, clause.Column{Table: "users", Name: "email"}, true},
		{"`users`.`email`", clause.Column{Table: "users", Name: "email"}, true},
		{`"users".email`, clause.Column{Table: "users", Name: "email"}, true},
		{"users.`email`", clause.Column{Table: "users", Name: "email"}, true},
		{`"my table"."my col"`, clause.Column{Table: "my table", Name: "my col"}, true}, // quoted: any character
		{`"a.b"`, clause.Column{Name: "a.b"}, true},                                     // a dot inside quotes is part of the name
		{"`a\"b`", clause.Column{Name: `a"b`}, true},                                    // the other quote inside quotes

		{"", clause.Column{}, false},
		{`""`, clause.Column{}, false}, // empty quoted name
		{"``", clause.Column{}, false}, // empty quoted name
		{`"users".""`, clause.Column{}, false},
		{"a.b.c", clause.Column{}, false}, // too many qualifiers
		{`"a"."b"."c"`, clause.Column{}, false},
		{"a.", clause.Column{}, false},      // dangling dot
		{".a", clause.Column{}, false},      // empty table
		{"a..b", clause.Column{}, false},    // empty part
		{`"email`, clause.Column{}, false},  // unbalanced
		{"`email", clause.Column{}, false},  // unbalanced
		{`"email'`, clause.Column{}, false}, // mismatched quotes
		{`"a"b`, clause.Column{}, false},    // text after the closing quote
		{`"a" .b`, clause.Column{}, false},
		{"1email", clause.Column{}, false},       // not an identifier
		{"lower(email)", clause.Column{}, false}, // an expression
		{"email ", clause.Column{}, false},       // the caller trims
		{"e-mail", clause.Column{}, false},
		{"émail", clause.Column{}, false},
		{"?", clause.Column{}, false},
	} {
		got, ok := parseColumn(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseColumn(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIndexAnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"a AND b", 1},
		{"a and b", 1},
		{"a aNd b", 1},
		{"a\tAND\nb", 1},
		{"a\r\nAND\r\nb", 2},
		{" AND b", 0},
		{"a AND ", 1},
		{"x  AND  y", 2}, // the space just before AND
		{"brand = ? AND band = ?", 9},
		{"band AND x", 4}, // "and" inside a word is not AND
		{"a = ? AND b = ? AND c = ?", 5},
		{"AND b", -1},  // no space before
		{"a AND", -1},  // no space after
		{"a ANDb", -1}, // a word
		{"a XAND b", -1},
		{"a OR b", -1},
		{"a & b", -1},
		{"", -1},
		{"AND", -1},
	} {
		if got := indexAnd(tc.in); got != tc.want {
			t.Errorf("indexAnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestIsIdent(t *testing.T) {
	for in, want := range map[string]bool{
		"a":      true,
		"_":      true,
		"Email":  true,
		"org_id": true,
		"a1":     true,
		"_9":     true,
		"A_b9z":  true,
		"":       false,
		"1":      false,
		"1a":     false,
		"a-b":    false,
		"a b":    false,
		"a.b":    false,
		`"a"`:    false,
		"a$":     false,
		"é":      false,
		"aé":     false,
		"a٣":     false, // a non-ASCII digit
	} {
		if got := isIdent(in); got != want {
			t.Errorf("isIdent(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestStartsWithWord(t *testing.T) {
	for _, tc := range []struct {
		sql, word string
		want      bool
	}{
		{"SELECT 1", "SELECT", true},
		{"select 1", "SELECT", true},
		{"  \t\r\nSelect\n*", "SELECT", true},
		{"SELECT\t*", "SELECT", true},
		{"RELEASE SAVEPOINT a", "RELEASE", true},
		{"SELECT", "SELECT", false},     // no space after the word
		{"SELECT ", "SELECT", true},     // a space after it
		{"SELECTED x", "SELECT", false}, // a longer word
		{"SELECT(1)", "SELECT", false},
		{"(SELECT 1)", "SELECT", false},
		{"-- SELECT 1", "SELECT", false},
		{"SEL", "SELECT", false},
		{"", "SELECT", false},
		{"INSERT INTO t SELECT 1", "SELECT", false},
	} {
		if got := startsWithWord(tc.sql, tc.word); got != tc.want {
			t.Errorf("startsWithWord(%q, %q) = %v, want %v", tc.sql, tc.word, got, tc.want)
		}
	}
}

func TestIsControl(t *testing.T) {
	for sql, want := range map[string]bool{
		"SAVEPOINT sp1":                     true,
		"  savepoint sp1":                   true,
		"RELEASE SAVEPOINT sp1":             true,
		"RELEASE sp1":                       true,
		"release savepoint sp1":             true,
		"ROLLBACK TO SAVEPOINT sp1":         true,
		"ROLLBACK TO sp1":                   true,
		"\n\trollback to savepoint sp1":     true,
		"SAVEPOINTS":                        false,
		"RELEASED x":                        false,
		"ROLLBACKS x":                       false,
		"SELECT 'SAVEPOINT sp1'":            false,
		"INSERT INTO savepoints VALUES (1)": false,
		"UPDATE t SET a = 1":                false,
		"SELECT 1":                          false,
		"":                                  false,
	} {
		if got := isControl(sql); got != want {
			t.Errorf("isControl(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestIsRead(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT 1":                            true,
		"select * from t":                     true,
		"  \nSELECT * FROM t WHERE a = ?":     true,
		"SELECT * FROM forum":                 true, // FOR only as a word
		"SELECT * FROM t ORDER BY format":     true,
		"SELECT * FROM t FOR UPDATE":          false,
		"SELECT * FROM t for share":           false,
		"SELECT * FROM t\nFOR\tUPDATE SKIP":   false,
		"SELECT * FROM t FOR NO KEY UPDATE":   false,
		"SELECT * FROM t LIMIT 1 FOR UPDATE ": false,
		"INSERT INTO t VALUES (1)":            false,
		"INSERT INTO t SELECT * FROM u":       false,
		"UPDATE t SET a = 1":                  false,
		"DELETE FROM t":                       false,
		"SAVEPOINT a":                         false,
		"SELECT":                              false,
		"SELECTED":                            false,
		"":                                    false,
	} {
		if got := isRead(sql); got != want {
			t.Errorf("isRead(%q) = %v, want %v", sql, got, want)
		}
	}
}
