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
