package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"github.com/safefind/safefind"
	"github.com/safefind/safefind/dialect"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Fuzz targets. Run one briefly with
//
//	go test -run '^$' -fuzz '^FuzzConditions$' -fuzztime 10s ./tests/
//	go test -run '^$' -fuzz '^FuzzIsRetryable$' -fuzztime 10s ./tests/
//
// Without -fuzz, go test runs the seeds added here and those committed under
// testdata/fuzz/<FuzzName>/.

// FuzzConditions hands lookups decoded from the input to FindOrCreate and
// CreateOrFind on SQLite: struct, struct pointer, slice of structs, maps
// (column names from a list of real, unknown, quoted and qualified names),
// SQL strings from templates and from a token list, clause expressions, and
// primary key values, inline or in a chain of Where and Clauses, on the model
// or on a Table, with values of many types (fuzzed strings, strings longer
// than the column, numbers, floats, bytes, NULLs, lists, expressions). The
// tables are emptied before each input, a row may be stored first, and the
// call runs twice, so each input is deterministic and meets both the miss and
// the hit path.
//
// The oracle, for each call:
//   - it never panics;
//   - on success: dest has an ID; re-read by that ID through a DB without the
//     plugin, the row equals dest; every equality the decoder produced holds
//     on the row in SQL (the database compares as the lookup does); the row
//     matches the whole lookup when it was found, when CreateOrFind created
//     it, or when every condition is an equality; the table has no two rows
//     with the same unique key; a created row adds one row, a found row none;
//     a created row keeps the attributes dest was prepared with, on columns
//     no condition names;
//   - on error: created is false and the message is not empty; for one of
//     safefind's input sentinels (ErrNoConditions, ErrUnknownColumn,
//     ErrUnsupportedCondition, ErrInvalidDest, ErrKeyNotUnique) no row was
//     written; an invalid dest is always an error;
//   - the second, identical call of a lookup made only of equalities that
//     cover a unique key (any equalities, for FindOrCreate) finds the first
//     call's row.
func FuzzConditions(f *testing.F) {
	e := open(f, "sqlite")
	e.reset(f, &Tag{}, &Member{})

	// shape: the call, the model, the chain's prefix, rows stored first, the
	// dest, the number of conditions, then each condition (decodeFuzzCase).
	for _, seed := range []struct {
		shape  []byte
		s1, s2 string
		n      int64
	}{
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 0}, "go", "", 0},                                 // inline Tag{Name}
		{[]byte{1, 0, 0, 1, 5, 0, 0, 1, 3, 1}, "go", "n", 0},                                // CreateOrFind &Tag{Name, Note}, the row stored, dest with attributes
		{[]byte{0, 1, 0, 2, 5, 0, 0, 0, 3, 0}, "a@x", "h", 7},                               // Where(Member{OrgID, Email}), the row stored
		{[]byte{0, 0, 1, 0, 0, 0, 2, 1, 1, 1, 0, 0, 1, 1}, "k", "v", 0},                     // Model, map of name and note
		{[]byte{1, 0, 0, 0, 0, 0, 2, 1, 1, 0, 0, 7}, "", "", 0},                             // CreateOrFind, map with a nil value
		{[]byte{1, 1, 0, 0, 0, 0, 2, 1, 1, 1, 0, 18, 1, 8}, "a@x", "", 3},                   // CreateOrFind, map with a one-element list
		{[]byte{0, 0, 0, 0, 0, 0, 3, 1, 1, 0, 1, 0, 1}, "x", "y", 0},                        // "name = ? AND note = ?"
		{[]byte{1, 0, 0, 0, 0, 0, 3, 0, 5, 0, 0}, "x", "", 0},                               // CreateOrFind, Where("name = ? OR 1=1")
		{[]byte{0, 0, 0, 0, 0, 0, 3, 0, 4, 0, 9}, "x", "y", 0},                              // Where("name IN ?", two values)
		{[]byte{0, 0, 3, 0, 0, 0, 3, 0, 0, 7, 0}, "aliased", "", 0},                         // Table("tags AS t"), Where("t.name = ?")
		{[]byte{0, 0, 0, 0, 0, 0, 3, 1, 9, 0, 0}, "named", "", 0},                           // "name = @v"
		{[]byte{0, 0, 0, 0, 0, 0, 4, 0, 6, 0, 10, 11, 12, 1, 10, 11, 2, 0, 1}, "t", "u", 0}, // SQL from tokens
		{[]byte{1, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0}, "eq", "", 0},                     // CreateOrFind, Clauses(clause.Eq)
		{[]byte{0, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0, 1, 6}, "p", "q", 0},                        // clause.And of two clause.Eq
		{[]byte{0, 0, 0, 0, 0, 0, 6, 0, 1, 2, 0, 18, 0, 0}, "e", "", 42},                    // Clauses(clause.Expr{"id = ? AND name = ?"})
		{[]byte{1, 0, 0, 0, 0, 0, 7, 1, 0}, "", "", 9000},                                   // CreateOrFind, inline primary key
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 2}, "same", "same", 0},                           // inline []Tag
		{[]byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 0}, strings.Repeat("L", 200), "", 0},             // longer than size:64
		{[]byte{0, 0, 0, 0, 7, 0, 0, 0, 1, 1, 0}, "x", "", 0},                               // nil dest
		{[]byte{0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 3, 1, 0, 0, 1}, "a", "b", 0},                  // two values for name
	} {
		f.Add(seed.shape, seed.s1, seed.s2, seed.n)
	}

	f.Fuzz(func(t *testing.T, shape []byte, s1, s2 string, n int64) {
		c := decodeFuzzCase(shape, s1, s2, n)
		c.run(t, e)
	})
}

// fuzzInput hands out the bytes of a fuzz input one at a time; past its end
// it hands out zeros, so that every input decodes to some case.
type fuzzInput []byte

func (in *fuzzInput) pick(n int) int {
	if len(*in) == 0 {
		return 0
	}
	b := (*in)[0]
	*in = (*in)[1:]
	return int(b) % n
}

// fuzzCol is a column name as a caller may spell it, and the column of the
// model it means when the statement is valid SQL ("" for none).
type fuzzCol struct{ spell, canon string }

// fuzzModel describes a model to the decoder.
type fuzzModel struct {
	table      string
	zero       func() any               // a pointer to a zero value
	attrs      func(s2 string) any      // a pointer with attributes to create with
	attrFields []string                 // the fields attrs sets
	keys       [][]string               // unique keys, the primary key first
	cols       []fuzzCol                // names for maps and clause columns
	sqlCols    []fuzzCol                // names inside SQL text (no ';', no spaces)
	structs    func(*fuzzCase) fuzzCond // a struct condition
}

// fuzzEq is an equality the decoder produced: col = value in SQL.
type fuzzEq struct {
	col   string
	value any
}

// fuzzCond is one condition of the lookup: in the chain, or inline.
type fuzzCond struct {
	desc    string
	chain   func(*gorm.DB) *gorm.DB // nil for an inline condition
	inline  []any
	eqs     []fuzzEq
	allEq   bool     // every part of it is an equality on a column of the model
	touched []string // columns of the model it names
}

// fuzzCase is one decoded input.
type fuzzCase struct {
	in      fuzzInput
	s1, s2  string
	n       int64
	create  bool // CreateOrFind, else FindOrCreate
	m       *fuzzModel
	prefix  int
	stored  int
	dest    int // below 7: a valid dest, 5 and 6 with attributes
	badDest int
	conds   []fuzzCond
	inlined bool
}

var (
	fuzzTag = &fuzzModel{
		table:      "tags",
		zero:       func() any { return &Tag{} },
		attrs:      func(s2 string) any { return &Tag{Note: "attr-" + s2} },
		attrFields: []string{"Note"},
		keys:       [][]string{{"id"}, {"name"}},
		cols: []fuzzCol{
			{"name", "name"}, {"note", "note"}, {"id", "id"}, {"Name", "name"},
			{"tags.name", "name"}, {"tags.note", "note"}, {"t.name", "name"},
			{`"name"`, ""}, {"nosuch", ""}, {"", ""}, {"other.name", ""},
			{"org_id", ""}, {"NAME", "name"}, {"name ", ""}, {"deleted_at", ""},
		},
		sqlCols: []fuzzCol{
			{"name", "name"}, {"note", "note"}, {"id", "id"}, {"tags.name", "name"},
			{`"name"`, "name"}, {"`note`", "note"}, {`"tags"."name"`, "name"},
			{"t.name", "name"}, {"nosuch", ""}, {"NAME", "name"}, {"other.name", ""},
		},
		structs: func(c *fuzzCase) fuzzCond {
			mask := c.in.pick(8)
			tag := Tag{}
			if mask&1 != 0 {
				tag.Name = c.s1
			}
			if mask&2 != 0 {
				tag.Note = c.s2
			}
			if mask&4 != 0 {
				tag.ID = c.unsigned()
			}
			var cond any = tag
			var args []any
			switch c.in.pick(4) {
			case 1:
				cond = &tag
			case 2:
				cond = []Tag{tag, {Name: c.s2}}
			case 3:
				args = []any{"name"} // selected: a zero Name is a condition too
			}
			return structCond(cond, args)
		},
	}
	fuzzMember = &fuzzModel{
		table:      "members",
		zero:       func() any { return &Member{} },
		attrs:      func(s2 string) any { return &Member{Handle: "attr-" + s2, Age: 7} },
		attrFields: []string{"Handle", "Age"},
		keys:       [][]string{{"id"}, {"org_id", "email"}, {"handle"}},
		cols: []fuzzCol{
			{"org_id", "org_id"}, {"email", "email"}, {"handle", "handle"}, {"age", "age"},
			{"id", "id"}, {"Email", "email"}, {"OrgID", "org_id"}, {"members.email", "email"},
			{"t.email", "email"}, {`"email"`, ""}, {"nosuch", ""}, {"", ""}, {"name", ""},
			{"tags.name", ""},
		},
		sqlCols: []fuzzCol{
			{"org_id", "org_id"}, {"email", "email"}, {"handle", "handle"}, {"age", "age"},
			{"id", "id"}, {"members.email", "email"}, {`"org_id"`, "org_id"}, {"`email`", "email"},
			{"t.email", "email"}, {"nosuch", ""}, {"name", ""},
		},
		structs: func(c *fuzzCase) fuzzCond {
			mask := c.in.pick(16)
			m := Member{}
			if mask&1 != 0 {
				m.OrgID = c.unsigned()
			}
			if mask&2 != 0 {
				m.Email = c.s1
			}
			if mask&4 != 0 {
				m.Handle = c.s2
			}
			if mask&8 != 0 {
				m.Age = int(c.n)
			}
			var cond any = m
			var args []any
			switch c.in.pick(4) {
			case 1:
				cond = &m
			case 2:
				cond = []Member{m, {Email: c.s2}}
			case 3:
				args = []any{"email", "OrgID"}
			}
			return structCond(cond, args)
		},
	}
)

// fuzzColumns maps the fields of Tag and Member to their columns.
var fuzzColumns = map[string]string{
	"ID": "id", "Name": "name", "Note": "note", "OrgID": "org_id", "Email": "email", "Handle": "handle", "Age": "age",
}

// structCond describes a struct condition (or a pointer or slice of them),
// with GORM's selected columns in args: its equalities are the non-zero
// fields, or with selected columns those columns only, zero or not.
func structCond(cond any, args []any) fuzzCond {
	c := fuzzCond{desc: fmt.Sprintf("%#v %v", cond, args), allEq: true}
	selected := map[string]bool{}
	for _, a := range args {
		selected[a.(string)] = true
	}
	v := reflect.Indirect(reflect.ValueOf(cond))
	add := func(s reflect.Value) {
		for i := 0; i < s.NumField(); i++ {
			name := s.Type().Field(i).Name
			col := fuzzColumns[name]
			if len(selected) > 0 && (selected[col] || selected[name]) || len(selected) == 0 && !s.Field(i).IsZero() {
				c.eqs = append(c.eqs, fuzzEq{col, s.Field(i).Interface()})
				c.touched = append(c.touched, col)
			}
		}
	}
	if v.Kind() == reflect.Slice {
		for i := 0; i < v.Len(); i++ {
			add(v.Index(i))
		}
	} else {
		add(v)
	}
	c.inline = append([]any{cond}, args...)
	return c
}

// fuzzValue returns the value numbered k: fuzzed strings and numbers in
// several types, and values an equality cannot store (NULLs, lists,
// expressions).
func fuzzValue(k int, s1, s2 string, n int64) any {
	switch k {
	case 0:
		return s1
	case 1:
		return s2
	case 2:
		return s1 + strings.Repeat("x", 120) // longer than every column's size
	case 3:
		return n
	case 4:
		return strconv.FormatInt(n, 10)
	case 5:
		return float64(n) + 0.5
	case 6:
		return []byte(s1)
	case 7:
		return nil
	case 8:
		return []string{s1}
	case 9:
		return []string{s1, s2}
	case 10:
		return []any{}
	case 11:
		return clause.Expr{SQL: "?", Vars: []any{s1}}
	case 12:
		return (*string)(nil)
	case 13:
		s := s1
		return &s
	case 14:
		return n%2 == 0
	case 15:
		return sql.NullString{String: s1, Valid: true}
	case 16:
		return sql.NullString{}
	case 17:
		return "0x" + strconv.FormatUint(uint64(uint16(n)), 16)
	case 18:
		return int64(uint16(n))
	}
	return ""
}

const fuzzValues = 20

// fuzzSingle reports whether v, bound to "col = ?", is one value compared
// with "=" (not NULL, not a list, not an expression), and the value to
// compare with.
func fuzzSingle(v any) (any, bool) {
	switch v := v.(type) {
	case nil, clause.Expression, []string, []any:
		return nil, false
	case *string:
		if v == nil {
			return nil, false
		}
		return *v, true
	case sql.NullString:
		return v, v.Valid
	}
	return v, true
}

// fuzzMapSingle is fuzzSingle for a map value, which GORM turns into IN
// when it is a list: a one-element list is an equality.
func fuzzMapSingle(v any) (any, bool) {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if k := rv.Kind(); k == reflect.Slice || k == reflect.Array {
		if rv.Len() != 1 {
			return nil, false
		}
		return fuzzSingle(rv.Index(0).Interface())
	}
	return fuzzSingle(v)
}

// fuzzTemplates are SQL conditions: %s is a column, each ? a value. eq marks
// the forms made only of column equalities.
var fuzzTemplates = []struct {
	sql        string
	cols, vals int
	eq         bool
}{
	{"%s = ?", 1, 1, true},
	{"%s = ? AND %s = ?", 2, 2, true},
	{"%s = ? and %s = ?", 2, 2, true},
	{"%s=?", 1, 1, true},
	{"%s IN ?", 1, 1, false},
	{"%s = ? OR 1=1", 1, 1, false},
	{"%s > ?", 1, 1, false},
	{"%s IS NULL", 1, 0, false},
	{"%s", 1, 1, true}, // Where("name", v): GORM's column = value
	{"%s = @v", 1, 1, false},
	{"(%s = ?)", 1, 1, false},
	{"%s = ? AND %s = ? AND 1=1", 2, 2, false},
	{"%s = ?;", 1, 1, false},
	{"???", 0, 1, false},
	{"= ?", 0, 1, false},
	{"%s = = ?", 1, 1, false},
	{"%s = ? AND", 1, 1, false},
	{"", 0, 0, false},
	{"NOT %s = ?", 1, 1, false},
	{"%s <> ?", 1, 1, false},
}

// fuzzTokens build SQL of a fuzzed shape from harmless pieces: no function,
// no statement separator.
var fuzzTokens = []string{
	"name", "note", "id", "tags.name", `"name"`, "`note`", "email", "org_id", "handle", "nosuch",
	"=", "?", "AND", "and", "OR", "IN", "(", ")", "1", "'x'", ">", "IS", "NULL", "NOT", "<>", ",", ".",
}

// decodeFuzzCase reads a case from the fuzz input. Byte by byte: the call,
// the model, the chain's prefix (none, Model, Table, Table with an alias,
// Model of another model), rows stored first, the dest, the number of
// conditions; then for each condition its form and its operands.
func decodeFuzzCase(shape []byte, s1, s2 string, n int64) *fuzzCase {
	c := &fuzzCase{in: fuzzInput(shape), s1: s1, s2: s2, n: n}
	c.create = c.in.pick(2) == 1
	c.m = []*fuzzModel{fuzzTag, fuzzMember}[c.in.pick(2)]
	c.prefix = c.in.pick(5)
	c.stored = c.in.pick(4)
	c.dest = c.in.pick(8)
	if c.dest == 7 {
		c.badDest = c.in.pick(4)
	}
	for k := 1 + c.in.pick(3); k > 0; k-- {
		c.conds = append(c.conds, c.decodeCond())
	}
	return c
}

// unsigned is n as a uint an SQLite integer holds: SQLite stores signed 64
// bits, so a uint above MaxInt64 would come back negative whatever safefind
// does.
func (c *fuzzCase) unsigned() uint { return uint(c.n & math.MaxInt64) }

func (c *fuzzCase) value() any { return fuzzValue(c.in.pick(fuzzValues), c.s1, c.s2, c.n) }

// decodeCond reads one condition, inline if the input asks so and no other
// condition is inline yet.
func (c *fuzzCase) decodeCond() fuzzCond {
	form := c.in.pick(8)
	inline := c.in.pick(2) == 1 && !c.inlined
	var d fuzzCond
	var query any
	var args []any
	var expr clause.Expression // for db.Clauses
	isExpr := form == 5 || form == 6
	switch form {
	case 0, 1: // struct
		d = c.m.structs(c)
		query, args = d.inline[0], d.inline[1:]
	case 2: // map
		col := func() fuzzCol { return c.m.cols[c.in.pick(len(c.m.cols))] }
		d.allEq = true
		if c.in.pick(4) == 0 {
			m := map[string]string{}
			for k := 1 + c.in.pick(3); k > 0; k-- {
				m[col().spell] = []string{c.s1, c.s2, ""}[c.in.pick(3)]
			}
			for k, v := range m {
				d.addEq(c.canon(k, c.m.cols), v, true)
			}
			query = m
		} else {
			m := map[string]any{}
			for k := 1 + c.in.pick(3); k > 0; k-- {
				m[col().spell] = c.value()
			}
			for k, v := range m {
				single, ok := fuzzMapSingle(v)
				d.addEq(c.canon(k, c.m.cols), single, ok)
			}
			query = m
		}
	case 3, 6: // SQL: a string, or a clause.Expr
		tpl := fuzzTemplates[c.in.pick(len(fuzzTemplates))]
		var cols []any
		var canons []string
		for i := 0; i < tpl.cols; i++ {
			col := c.m.sqlCols[c.in.pick(len(c.m.sqlCols))]
			cols = append(cols, col.spell)
			canons = append(canons, c.canon(col.spell, c.m.sqlCols))
		}
		sqlText := tpl.sql
		if len(cols) > 0 {
			sqlText = fmt.Sprintf(tpl.sql, cols...)
		}
		for i := 0; i < tpl.vals; i++ {
			args = append(args, c.value())
		}
		// "a = ? AND b = ?" is equalities when each var is one value;
		// otherwise none of it is.
		eq := tpl.eq && !(form == 6 && tpl.sql == "%s")
		singles := make([]any, len(canons))
		for i := range canons {
			ok := false
			if i < len(args) {
				singles[i], ok = fuzzSingle(args[i])
			}
			eq = eq && ok
		}
		if tpl.sql == "%s = @v" {
			args = []any{sql.Named("v", args[0])}
		}
		d.allEq = eq
		for i, canon := range canons {
			d.addEq(canon, singles[i], eq)
		}
		if form == 6 {
			expr = clause.Expr{SQL: sqlText, Vars: args}
			query, args = expr, nil
		} else {
			query = sqlText
		}
	case 4: // SQL from tokens
		var parts []string
		for k := 1 + c.in.pick(10); k > 0; k-- {
			tok := fuzzTokens[c.in.pick(len(fuzzTokens))]
			parts = append(parts, tok)
			d.addEq(c.canon(tok, c.m.sqlCols), nil, false)
		}
		for k := c.in.pick(3); k > 0; k-- {
			args = append(args, c.value())
		}
		query = strings.Join(parts, " ")
	case 5: // clause expressions
		col := c.m.cols[c.in.pick(len(c.m.cols))]
		canon := c.canon(col.spell, c.m.cols)
		var column any = col.spell
		switch c.in.pick(4) {
		case 1:
			column = clause.Column{Name: col.spell}
			if strings.Contains(col.spell, ".") {
				canon = "" // unsplit: not a column of the model
			}
		case 2:
			column = clause.Column{Table: clause.CurrentTable, Name: col.spell}
		case 3:
			column = clause.Column{Name: col.spell, Raw: true}
			canon = ""
		}
		v, w := c.value(), c.value()
		single, ok := fuzzSingle(v)
		switch c.in.pick(10) {
		case 0:
			expr = clause.Eq{Column: column, Value: v}
			d.allEq = true
			d.addEq(canon, single, ok)
		case 1:
			expr = clause.Neq{Column: column, Value: v}
		case 2:
			expr = clause.Gt{Column: column, Value: v}
		case 3:
			expr = clause.IN{Column: column, Values: []any{v}}
			d.allEq = true
			d.addEq(canon, single, ok)
		case 4:
			expr = clause.IN{Column: column, Values: []any{v, w}}
		case 5:
			expr = clause.Or(clause.Eq{Column: column, Value: v}, clause.Eq{Column: column, Value: w})
		case 6:
			expr = clause.And(clause.Eq{Column: column, Value: v}, clause.Eq{Column: "note", Value: w})
			d.allEq = true
			d.addEq(canon, single, ok)
			single2, ok2 := fuzzSingle(w)
			d.addEq(c.canon("note", c.m.cols), single2, ok2)
		case 7:
			expr = clause.Not(clause.Eq{Column: column, Value: v})
		case 8:
			expr = clause.Like{Column: column, Value: v}
		case 9:
			expr = clause.And() // nil
		}
		if !d.allEq {
			d.addEq(canon, nil, false)
		}
		query = expr
	case 7: // a primary key value, as First(&x, 5) takes it
		pks := []any{c.n, strconv.FormatInt(c.n, 10), c.unsigned(), []int64{c.n}, []int64{c.n, c.n + 1}, []int64{}, nil, int64(uint16(c.n))}
		pk := pks[c.in.pick(len(pks))]
		query = pk
		single, ok := fuzzMapSingle(pk)
		d.allEq = true
		d.addEq("id", single, ok)
	}
	d.desc = fmt.Sprintf("%#v %#v", query, args)
	if inline {
		c.inlined = true
		d.inline = append([]any{query}, args...)
		d.desc = "inline " + d.desc
		return d
	}
	d.inline = nil
	if isExpr && c.in.pick(2) == 0 {
		d.chain = func(db *gorm.DB) *gorm.DB { return db.Clauses(expr) }
		d.desc = "Clauses " + d.desc
		return d
	}
	d.chain = func(db *gorm.DB) *gorm.DB { return db.Where(query, args...) }
	d.desc = "Where " + d.desc
	return d
}

// canon is the column of the model that spell names in cols ("" if none).
func (c *fuzzCase) canon(spell string, cols []fuzzCol) string {
	for _, col := range cols {
		if col.spell == spell {
			return col.canon
		}
	}
	return ""
}

// addEq records an equality on col (a column of the model, or "") when ok,
// and that the condition names col.
func (d *fuzzCond) addEq(col string, value any, ok bool) {
	if col == "" || !ok {
		d.allEq = false
	}
	if col != "" {
		d.touched = append(d.touched, col)
		if ok {
			d.eqs = append(d.eqs, fuzzEq{col, value})
		}
	}
}

func (c *fuzzCase) String() string {
	op := "FindOrCreate"
	if c.create {
		op = "CreateOrFind"
	}
	var conds []string
	for _, d := range c.conds {
		conds = append(conds, d.desc)
	}
	return fmt.Sprintf("%s on %s, prefix %d, stored %d, dest %d/%d: %s", op, c.m.table, c.prefix, c.stored, c.dest, c.badDest, strings.Join(conds, "; "))
}

// lookup builds the caller's chain on db and returns it with the inline
// conditions.
func (c *fuzzCase) lookup(db *gorm.DB) (*gorm.DB, []any) {
	switch c.prefix {
	case 1:
		db = db.Model(c.m.zero())
	case 2:
		db = db.Table(c.m.table)
	case 3:
		db = db.Table(c.m.table + " AS t")
	case 4:
		other := fuzzTag
		if c.m == fuzzTag {
			other = fuzzMember
		}
		db = db.Model(other.zero())
	}
	var inline []any
	for _, d := range c.conds {
		if d.chain != nil {
			db = d.chain(db)
		} else {
			inline = d.inline
		}
	}
	return db, inline
}

// newDest returns the dest the case asks for, and whether it is valid.
func (c *fuzzCase) newDest() (any, bool) {
	switch {
	case c.dest < 5:
		return c.m.zero(), true
	case c.dest < 7:
		return c.m.attrs(c.s2), true
	}
	return []any{nil, reflect.ValueOf(c.m.zero()).Elem().Interface(), new(int), &[]Tag{}}[c.badDest], false
}

func (c *fuzzCase) allEq() bool {
	for _, d := range c.conds {
		if !d.allEq {
			return false
		}
	}
	return len(c.conds) > 0
}

// coversKey reports whether the equalities cover a unique key.
func (c *fuzzCase) coversKey() bool {
	has := map[string]bool{}
	for _, d := range c.conds {
		for _, eq := range d.eqs {
			has[eq.col] = true
		}
	}
	for _, key := range c.m.keys {
		all := true
		for _, col := range key {
			all = all && has[col]
		}
		if all {
			return true
		}
	}
	return false
}

// fuzzSentinels are safefind's errors for bad input: nothing is written.
var fuzzSentinels = []error{
	safefind.ErrNoConditions, safefind.ErrUnknownColumn, safefind.ErrUnsupportedCondition,
	safefind.ErrInvalidDest, safefind.ErrKeyNotUnique,
}

func (c *fuzzCase) run(t *testing.T, e *env) {
	require.NoError(t, e.other.Transaction(func(tx *gorm.DB) error {
		for _, stmt := range []string{"DELETE FROM tags", "DELETE FROM members", "DELETE FROM sqlite_sequence"} {
			if err := tx.Exec(stmt).Error; err != nil {
				return err
			}
		}
		return nil
	}))
	if c.stored&1 != 0 {
		require.NoError(t, e.other.Create(&Tag{Name: c.s1, Note: "stored"}).Error)
	}
	if c.stored&2 != 0 {
		require.NoError(t, e.other.Create(&Member{OrgID: uint(uint16(c.n)), Email: c.s1, Handle: c.s2}).Error)
	}
	first, ok := c.call(t, e)
	second, ok2 := c.call(t, e)
	if ok && c.allEq() && (!c.create || c.coversKey()) {
		if !ok2 {
			t.Fatalf("%v\nthe first call returned row %d; the same lookup again failed", c, first)
		}
		if first != second {
			t.Fatalf("%v\nthe first call returned row %d; the same lookup again returned row %d", c, first, second)
		}
	}
}

// call runs the case once and checks the oracle. It returns the row's ID
// and whether the call succeeded.
func (c *fuzzCase) call(t *testing.T, e *env) (uint64, bool) {
	fn := safefind.FindOrCreate
	if c.create {
		fn = safefind.CreateOrFind
	}
	var (
		tx     *gorm.DB
		inline []any
	)
	if !fuzzRecover(func() { tx, inline = c.lookup(e.db) }) {
		t.Skipf("GORM panics building the chain: %v", c)
	}
	dest, validDest := c.newDest()
	prepared := reflect.ValueOf(dest)
	if validDest {
		prepared = reflect.New(prepared.Type().Elem())
		prepared.Elem().Set(reflect.ValueOf(dest).Elem())
	}
	tags, members := e.count(t, &Tag{}), e.count(t, &Member{})

	var created bool
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%v\npanic: %v\n%s", c, r, debug.Stack())
			}
		}()
		created, err = fn(tx, dest, inline...)
	}()

	tags2, members2 := e.count(t, &Tag{}), e.count(t, &Member{})
	if err != nil {
		if created {
			t.Fatalf("%v\ncreated with an error: %v", c, err)
		}
		if err.Error() == "" {
			t.Fatalf("%v\nan error with an empty message: %#v", c, err)
		}
		for _, s := range fuzzSentinels {
			if errors.Is(err, s) && (tags2 != tags || members2 != members) {
				t.Fatalf("%v\n%v, yet rows were written: tags %d→%d, members %d→%d", c, err, tags, tags2, members, members2)
			}
		}
		return 0, false
	}
	if !validDest {
		t.Fatalf("%v\nan invalid dest %T was accepted", c, dest)
	}

	// The row: an ID, stored as dest holds it.
	idField := reflect.ValueOf(dest).Elem().FieldByName("ID")
	id := idField.Uint()
	if id == 0 {
		t.Fatalf("%v\nsuccess without an ID: %+v", c, dest)
	}
	stored := c.m.zero()
	if err := e.other.First(stored, id).Error; err != nil {
		t.Fatalf("%v\ncreated %v: row %d cannot be read back: %v", c, created, id, err)
	}
	if !reflect.DeepEqual(stored, dest) {
		t.Fatalf("%v\ndest %+v, stored %+v", c, dest, stored)
	}

	// The row meets the equalities, in SQL.
	for _, d := range c.conds {
		for _, eq := range d.eqs {
			var n int64
			q := e.other.Model(c.m.zero()).Where("id = ?", id).Where(clause.Eq{Column: clause.Column{Name: eq.col}, Value: eq.value})
			require.NoError(t, q.Count(&n).Error, "%v", c)
			if n != 1 {
				t.Fatalf("%v\ncreated %v: row %+v does not meet %s = %#v", c, created, stored, eq.col, eq.value)
			}
		}
	}
	// The row meets the whole lookup, when the lookup promises it.
	if !created || c.create || c.allEq() {
		sub, inline := c.lookup(e.other.Model(c.m.zero()))
		if len(inline) > 0 {
			sub = sub.Where(inline[0], inline[1:]...)
		}
		// The lookup as it is, its vars bound as in the call (GORM binds a
		// var the SQL has no placeholder for after the others): the tables
		// hold a few rows only.
		rows := reflect.New(reflect.SliceOf(reflect.TypeOf(stored).Elem()))
		if err := sub.Find(rows.Interface()).Error; err != nil {
			t.Fatalf("%v\ncreated %v: the call succeeded, yet its lookup fails: %v", c, created, err)
		}
		selected := false
		for i := 0; i < rows.Elem().Len(); i++ {
			selected = selected || rows.Elem().Index(i).FieldByName("ID").Uint() == id
		}
		if !selected {
			t.Fatalf("%v\ncreated %v: row %+v is not one the lookup selects", c, created, stored)
		}
	}

	// Rows written: one for a created row, none for a found one.
	want := map[bool]int64{true: 1, false: 0}[created]
	wantTags, wantMembers := tags, members
	if c.m == fuzzTag {
		wantTags += want
	} else {
		wantMembers += want
	}
	if tags2 != wantTags || members2 != wantMembers {
		t.Fatalf("%v\ncreated %v: tags %d→%d, members %d→%d", c, created, tags, tags2, members, members2)
	}
	// Unique keys hold.
	for _, key := range c.m.keys[1:] {
		var dups int64
		cols := strings.Join(key, ", ")
		require.NoError(t, e.other.Raw(fmt.Sprintf("SELECT count(*) FROM (SELECT %s FROM %s GROUP BY %s HAVING count(*) > 1)", cols, c.m.table, cols)).Scan(&dups).Error)
		if dups != 0 {
			t.Fatalf("%v\ntwo rows of %s share a key (%s)", c, c.m.table, cols)
		}
	}
	// A created row keeps the attributes on columns no condition names.
	if created {
		touched := map[string]bool{}
		for _, d := range c.conds {
			for _, col := range d.touched {
				touched[col] = true
			}
		}
		for _, name := range c.m.attrFields {
			s, p := reflect.ValueOf(stored).Elem().FieldByName(name), prepared.Elem().FieldByName(name)
			if !touched[fuzzColumns[name]] && !reflect.DeepEqual(s.Interface(), p.Interface()) {
				t.Fatalf("%v\ncreated %+v from dest %+v: %s lost", c, stored, prepared.Interface(), name)
			}
		}
	}
	return id, true
}

// fuzzRecover runs fn and reports whether it returned without a panic.
func fuzzRecover(fn func()) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	fn()
	return true
}

// FuzzIsRetryable builds an error from a small stack program in the input:
// driver errors (*pgconn.PgError with fuzzed SQLSTATE, *mysql.MySQLError and
// sqlite3.Error with fuzzed numbers, their nil typed pointers), plain errors,
// GORM's and safefind's sentinels, combined by %w and %v wraps of fuzzed
// depth, GORM's AddError ("%v; %w"), errors.Join, fmt.Errorf with two %w,
// and wrapper types of the test's own.
//
// The oracle: safefind.IsRetryable and dialect.For(name).Retryable for
// "postgres", "mysql" and "sqlite" never panic and agree with a reference
// computed while the error is built, from the documented codes only:
// PostgreSQL SQLSTATE 40001 and 40P01, MySQL 1213, 1205 and 1020, SQLite
// SQLITE_BUSY (5) and SQLITE_LOCKED (6) with their extended codes (the
// primary code is the low 8 bits), anywhere in the error's tree that errors.Is
// would reach (a %v wrap hides what it formats), plus safefind.ErrStaleSnapshot
// for IsRetryable. A nil typed pointer carries no code.
func FuzzIsRetryable(f *testing.F) {
	// prog: one op a byte, each op taking its operands from the next bytes
	// (fuzzErrProgram).
	for _, seed := range []struct {
		prog []byte
		code string
		num  int64
	}{
		{[]byte{0, 1}, "", 0},                          // PgError 40001
		{[]byte{0, 2, 7}, "", 0},                       // %w of PgError 40P01
		{[]byte{0, 0}, "40001", 0},                     // PgError with the fuzzed SQLSTATE
		{[]byte{1, 1, 13, 5}, "", 0},                   // MySQL 1213, five %w deep
		{[]byte{1, 0}, "", 1062},                       // MySQL with the fuzzed number
		{[]byte{2, 4}, "", 0},                          // SQLITE_BUSY_SNAPSHOT as the driver makes it
		{[]byte{3, 0}, "", 517},                        // sqlite3.Error{Code: 517}
		{[]byte{2, 9}, "", 0},                          // SQLITE_CONSTRAINT_UNIQUE
		{[]byte{5, 6, 8}, "", 0},                       // ErrStaleSnapshot formatted with %v
		{[]byte{5, 6, 5, 0, 9}, "", 0},                 // AddError(ErrStaleSnapshot, ErrRecordNotFound)
		{[]byte{5, 0, 1, 2, 9}, "", 0},                 // AddError(ErrRecordNotFound, MySQL 1205)
		{[]byte{0, 4, 1, 3, 11, 14, 15, 10, 0}, "", 0}, // two %w, a list with a nil, joined twice
		{[]byte{6, 1, 1, 2, 9}, "", 0},                 // AddError(nil *MySQLError, MySQL 1205)
		{[]byte{6, 2, 7}, "", 0},                       // %w of a nil *sqlite3.Error
		{[]byte{6, 3, 7, 0, 1, 10, 0}, "", 0},          // join(PgError 40001, %w of nil)
		{[]byte{0, 2, 12, 5, 3, 10, 0}, "", 0},         // join(context.Canceled, fuzzWrap(40P01))
	} {
		f.Add(seed.prog, seed.code, seed.num)
	}

	f.Fuzz(func(t *testing.T, prog []byte, code string, num int64) {
		e := fuzzErrProgram(prog, code, num)
		want := map[string]bool{"postgres": e.pg, "mysql": e.my, "sqlite": e.lite}
		wantAny := e.pg || e.my || e.lite || e.stale
		check := func(what string, fn func() bool, want bool) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%s panicked on %s (%v): %v\n%s", what, e.desc, e.err, r, debug.Stack())
				}
			}()
			if got := fn(); got != want {
				t.Fatalf("%s = %v, want %v, on %s (%v)", what, got, want, e.desc, e.err)
			}
		}
		for _, name := range []string{"postgres", "mysql", "sqlite"} {
			d := dialect.For(name)
			check(fmt.Sprintf("dialect.For(%q).Retryable", name), func() bool { return d.Retryable(e.err) }, want[name])
		}
		check("safefind.IsRetryable", func() bool { return safefind.IsRetryable(e.err) }, wantAny)
	})
}

// fuzzErr is an error built by the fuzzer, with what the reference expects
// of it: whether errors.Is would reach a retryable error of each kind.
type fuzzErr struct {
	err                 error
	pg, my, lite, stale bool
	desc                string
	size                int // errors in its tree, to bound the work
}

// Codes to choose from; the first of each list is taken from the input.
var (
	fuzzPgCodes     = []string{"", "40001", "40P01", "23505", "40002", "40003", "55P03", "57014", "40p01", "4000", "40001 "}
	fuzzMySQLNums   = []uint16{0, 1213, 1205, 1020, 1062, 1216, 1451, 2006, 1214, 65535}
	fuzzSQLiteCodes = []int{0, 5, 6, int(sqlite3.ErrBusyRecovery), int(sqlite3.ErrBusySnapshot), int(sqlite3.ErrBusy.Extend(3)),
		int(sqlite3.ErrLockedSharedCache), int(sqlite3.ErrLocked.Extend(2)), 19, int(sqlite3.ErrConstraintUnique), 1, 8, 10, 3850, 261 + 256*256}
	fuzzSentinelErrs = []error{
		gorm.ErrRecordNotFound, gorm.ErrDuplicatedKey, gorm.ErrInvalidTransaction, context.Canceled,
		sql.ErrTxDone, safefind.ErrConflictNotFound, safefind.ErrStaleSnapshot, safefind.ErrNoConditions,
	}
)

// fuzzWrap and fuzzMulti are wrapper types of the caller's own.
type fuzzWrap struct{ err error }

func (w fuzzWrap) Error() string { return "wrap" }
func (w fuzzWrap) Unwrap() error { return w.err }

type fuzzMulti struct{ errs []error }

func (m fuzzMulti) Error() string   { return "multi" }
func (m fuzzMulti) Unwrap() []error { return m.errs }

// fuzzErrProgram runs prog on a stack of errors and returns the error left
// (the join of the stack when more than one is left). Ops, by byte modulo 16:
//
//	0 PgError, 1 MySQLError, 2 sqlite3.Error as the driver makes it,
//	3 sqlite3.Error with Code only, 4 errors.New(code), 5 a sentinel,
//	6 a nil (typed pointer or untyped), 7 wrap with %w, 8 format with %v,
//	9 GORM's AddError of two, 10 errors.Join of 2-4, 11 fmt.Errorf with two %w,
//	12 fuzzWrap, 13 %w wraps 0-15 deep, 14 fuzzMulti with a nil, 15 duplicate.
func fuzzErrProgram(prog []byte, code string, num int64) fuzzErr {
	const maxSize = 500
	if len(code) > 32 {
		code = code[:32] // the messages of deep wraps grow with it
	}
	in := fuzzInput(prog)
	var stack []fuzzErr
	pop := func() fuzzErr {
		if len(stack) == 0 {
			return fuzzErr{desc: "nil"}
		}
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return e
	}
	leaf := func(err error, desc string) fuzzErr { return fuzzErr{err: err, desc: desc, size: 1} }
	// wrapped: err reaches every error of the children.
	wrapped := func(err error, desc string, children ...fuzzErr) fuzzErr {
		w := fuzzErr{err: err, desc: desc, size: 1}
		for _, c := range children {
			w.pg, w.my, w.lite, w.stale = w.pg || c.pg, w.my || c.my, w.lite || c.lite, w.stale || c.stale
			w.size += c.size
		}
		return w
	}
	for steps := 0; len(in) > 0 && steps < 64; steps++ {
		op := in.pick(16)
		switch op {
		case 0:
			codes := append([]string{code}, fuzzPgCodes[1:]...)
			c := codes[in.pick(len(codes))]
			e := leaf(&pgconn.PgError{Code: c}, fmt.Sprintf("pg(%q)", c))
			e.pg = c == "40001" || c == "40P01"
			stack = append(stack, e)
		case 1:
			nums := append([]uint16{uint16(num)}, fuzzMySQLNums[1:]...)
			n := nums[in.pick(len(nums))]
			e := leaf(&gomysql.MySQLError{Number: n}, fmt.Sprintf("mysql(%d)", n))
			e.my = n == 1213 || n == 1205 || n == 1020
			stack = append(stack, e)
		case 2, 3:
			codes := append([]int{int(uint32(num))}, fuzzSQLiteCodes[1:]...)
			v := codes[in.pick(len(codes))]
			err := sqlite3.Error{Code: sqlite3.ErrNo(v & 0xff), ExtendedCode: sqlite3.ErrNoExtended(v)}
			desc := fmt.Sprintf("sqlite(%d)", v)
			if op == 3 {
				err = sqlite3.Error{Code: sqlite3.ErrNo(v)}
				desc = fmt.Sprintf("sqlite(code %d)", v)
			}
			e := leaf(err, desc)
			primary := v & 0xff
			e.lite = primary == 5 || primary == 6
			stack = append(stack, e)
		case 4:
			stack = append(stack, leaf(errors.New(code), fmt.Sprintf("errors.New(%q)", code)))
		case 5:
			s := fuzzSentinelErrs[in.pick(len(fuzzSentinelErrs))]
			e := leaf(s, fmt.Sprintf("sentinel(%q)", s))
			e.stale = s == safefind.ErrStaleSnapshot
			stack = append(stack, e)
		case 6:
			switch in.pick(4) {
			case 0:
				stack = append(stack, leaf((*pgconn.PgError)(nil), "(*pgconn.PgError)(nil)"))
			case 1:
				stack = append(stack, leaf((*gomysql.MySQLError)(nil), "(*mysql.MySQLError)(nil)"))
			case 2:
				stack = append(stack, leaf((*sqlite3.Error)(nil), "(*sqlite3.Error)(nil)"))
			case 3:
				stack = append(stack, fuzzErr{desc: "nil"})
			}
		case 7:
			a := pop()
			stack = append(stack, wrapped(fmt.Errorf("w: %w", a.err), "w("+a.desc+")", a))
		case 8:
			a := pop()
			stack = append(stack, fuzzErr{err: fmt.Errorf("v: %v", a.err), desc: "v(" + a.desc + ")", size: 1})
		case 9:
			b, a := pop(), pop()
			db := &gorm.DB{Config: &gorm.Config{}}
			_ = db.AddError(a.err)
			_ = db.AddError(b.err)
			var e fuzzErr
			switch {
			case a.err == nil && b.err == nil:
				e = fuzzErr{desc: "nil"}
			case a.err == nil:
				e = b
			case b.err == nil:
				e = a
			default: // "%v; %w": a is formatted, b wrapped
				e = wrapped(db.Error, "", b)
			}
			e.err, e.desc = db.Error, "AddError("+a.desc+", "+b.desc+")"
			stack = append(stack, e)
		case 10:
			k := 2 + in.pick(3)
			var parts []fuzzErr
			var errs []error
			var descs []string
			for ; k > 0; k-- {
				p := pop()
				parts, errs, descs = append(parts, p), append(errs, p.err), append(descs, p.desc)
			}
			e := wrapped(errors.Join(errs...), "join("+strings.Join(descs, ", ")+")", parts...)
			if e.err == nil {
				e = fuzzErr{desc: e.desc}
			}
			stack = append(stack, e)
		case 11:
			b, a := pop(), pop()
			stack = append(stack, wrapped(fmt.Errorf("%w / %w", a.err, b.err), "w2("+a.desc+", "+b.desc+")", a, b))
		case 12:
			a := pop()
			stack = append(stack, wrapped(fuzzWrap{a.err}, "fuzzWrap("+a.desc+")", a))
		case 13:
			a := pop()
			k := in.pick(16)
			for i := 0; i < k && a.size < maxSize; i++ {
				a = wrapped(fmt.Errorf("depth %d: %w", i, a.err), a.desc, a)
			}
			a.desc = fmt.Sprintf("w%d(%s)", k, a.desc)
			stack = append(stack, a)
		case 14:
			a := pop()
			stack = append(stack, wrapped(fuzzMulti{[]error{nil, a.err}}, "fuzzMulti(nil, "+a.desc+")", a))
		case 15:
			if len(stack) > 0 {
				stack = append(stack, stack[len(stack)-1])
			}
		}
		total := 0
		for _, e := range stack {
			total += e.size
		}
		if total > maxSize {
			break
		}
	}
	switch len(stack) {
	case 0:
		return fuzzErr{desc: "nil"}
	case 1:
		return stack[0]
	}
	return fuzzErrJoin(stack)
}

// fuzzErrJoin joins what is left on the stack.
func fuzzErrJoin(stack []fuzzErr) fuzzErr {
	var errs []error
	var descs []string
	j := fuzzErr{}
	for _, e := range stack {
		errs, descs = append(errs, e.err), append(descs, e.desc)
		j.pg, j.my, j.lite, j.stale = j.pg || e.pg, j.my || e.my, j.lite || e.lite, j.stale || e.stale
	}
	j.err = errors.Join(errs...)
	j.desc = "join(" + strings.Join(descs, ", ") + ")"
	return j
}
