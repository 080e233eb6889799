package safefind

import (
	"strings"

	"gorm.io/gorm/clause"
)

// parseEqualities reads SQL of the form `a = ? AND t.b = ?` (identifiers
// optionally quoted or qualified by a table), one value per placeholder. It
// returns nil for anything else.
func parseEqualities(sql string, vars []any) []pair {
	var pairs []pair
	rest := sql
	for i := 0; ; i++ {
		term := rest
		if j := indexAnd(rest); j >= 0 {
			term, rest = rest[:j], rest[j+len(" AND "):]
		} else {
			rest = ""
		}
		lhs, rhs, ok := strings.Cut(term, "=")
		if !ok || strings.TrimSpace(rhs) != "?" || i >= len(vars) || !assignable(vars[i]) {
			return nil
		}
		col, ok := parseColumn(strings.TrimSpace(lhs))
		if !ok {
			return nil
		}
		pairs = append(pairs, pair{col, vars[i]})
		if rest == "" {
			if i+1 != len(vars) {
				return nil
			}
			return pairs
		}
	}
}

// indexAnd finds the first " AND " (any case, any surrounding whitespace).
func indexAnd(s string) int {
	for i := 0; i+5 <= len(s); i++ {
		if isSpace(s[i]) && strings.EqualFold(s[i+1:i+4], "AND") && isSpace(s[i+4]) {
			return i
		}
	}
	return -1
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// parseColumn reads `name`, `"name"`, `table.name` and their quoted forms.
func parseColumn(s string) (clause.Column, bool) {
	var parts []string
	for s != "" {
		var part string
		switch s[0] {
		case '"', '`':
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return clause.Column{}, false
			}
			part, s = s[1:1+end], s[2+end:]
		default:
			end := strings.IndexByte(s, '.')
			if end < 0 {
				end = len(s)
			}
			part, s = s[:end], s[end:]
			if !isIdent(part) {
				return clause.Column{}, false
			}
		}
		if part == "" {
			return clause.Column{}, false
		}
		parts = append(parts, part)
		if s != "" {
			if s[0] != '.' {
				return clause.Column{}, false
			}
			s = s[1:]
			if s == "" {
				return clause.Column{}, false
			}
		}
	}
	switch len(parts) {
	case 1:
		return clause.Column{Name: parts[0]}, true
	case 2:
		return clause.Column{Table: parts[0], Name: parts[1]}, true
	}
	return clause.Column{}, false
}

func isIdent(s string) bool {
	for i, r := range s {
		if r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9' {
			continue
		}
		return false
	}
	return s != ""
}

func isSavepoint(sql string) bool {
	sql = strings.TrimLeft(sql, " \t\r\n")
	return len(sql) >= len("SAVEPOINT ") && strings.EqualFold(sql[:len("SAVEPOINT ")], "SAVEPOINT ")
}

// isControl reports whether sql opens, releases or rolls back a savepoint
// (ROLLBACK of the whole transaction does not pass through GORM's callbacks).
func isControl(sql string) bool {
	return isSavepoint(sql) || startsWithWord(sql, "RELEASE") || startsWithWord(sql, "ROLLBACK")
}

func startsWithWord(sql, word string) bool {
	sql = strings.TrimLeft(sql, " \t\r\n")
	return len(sql) > len(word) && strings.EqualFold(sql[:len(word)], word) && isSpace(sql[len(word)])
}

// isRead reports whether sql reads without locking, which gives a
// subtransaction no id.
func isRead(sql string) bool {
	if !startsWithWord(sql, "SELECT") {
		return false
	}
	for i := 0; i+5 <= len(sql); i++ {
		if isSpace(sql[i]) && strings.EqualFold(sql[i+1:i+4], "FOR") && isSpace(sql[i+4]) {
			return false
		}
	}
	return true
}
