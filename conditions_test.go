package safefind

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	gormtests "gorm.io/gorm/utils/tests"
)

func TestColumnOf(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want clause.Column
		ok   bool
	}{
		{clause.Column{Name: "a"}, clause.Column{Name: "a"}, true},
		{clause.Column{Table: "t", Name: "a"}, clause.Column{Table: "t", Name: "a"}, true},
		{clause.Column{Table: clause.CurrentTable, Name: clause.PrimaryKey}, clause.Column{Table: clause.CurrentTable, Name: clause.PrimaryKey}, true},
		{clause.Column{Name: "lower(a)", Raw: true}, clause.Column{}, false}, // raw SQL, not a column
		{"a", clause.Column{Name: "a"}, true},
		{"t.a", clause.Column{Table: "t", Name: "a"}, true},
		{"", clause.Column{}, true},
		{nil, clause.Column{}, false},
		{5, clause.Column{}, false},
		{[]string{"a"}, clause.Column{}, false},
		{[]clause.Column{{Name: "a"}}, clause.Column{}, false}, // a tuple
		{clause.Expr{SQL: "a"}, clause.Column{}, false},
	} {
		got, ok := columnOf(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("columnOf(%#v) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// bytesValuer is a slice that is one value: a driver.Valuer.
type bytesValuer []int

func (b bytesValuer) Value() (driver.Value, error) { return len(b), nil }

func TestAssignable(t *testing.T) {
	var nilInt *int
	n := 1
	db, err := gorm.Open(gormtests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	type blob []byte
	for _, tc := range []struct {
		name string
		in   any
		want bool
	}{
		{"string", "a", true},
		{"empty string", "", true},
		{"int", 0, true},
		{"float", 1.5, true},
		{"bool", false, true},
		{"time", time.Time{}, true},
		{"pointer", &n, true},
		{"bytes", []byte("a"), true},
		{"nil bytes", []byte(nil), true},
		{"named bytes", blob("a"), true},
		{"byte array", [4]byte{1, 2, 3, 4}, true},
		{"Valuer", sql.NullString{String: "a", Valid: true}, true},
		{"Valuer slice", bytesValuer{1, 2}, true},
		{"nil", nil, false},
		{"nil pointer", nilInt, false},
		{"NULL Valuer", sql.NullString{}, false},
		{"pointer to NULL Valuer", &sql.NullInt64{}, false},
		{"list", []string{"a"}, false},
		{"int list", []int{1}, false},
		{"array", [2]int{1, 2}, false},
		{"any list", []any{"a"}, false},
		{"expression", gorm.Expr("lower(?)", "a"), false},
		{"column", clause.Expr{SQL: "name"}, false},
		{"query", db.Model(&condModel{}).Select("name"), false},
	} {
		if got := assignable(tc.in); got != tc.want {
			t.Errorf("%s: assignable(%#v) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestIsNull(t *testing.T) {
	var nilInt *int
	n := 0
	for _, tc := range []struct {
		name string
		in   any
		want bool
	}{
		{"nil", nil, true},
		{"nil pointer", nilInt, true},
		{"nil pointer to Valuer", (*sql.NullString)(nil), true},
		{"nil pointer-receiver Valuer", (*testPtrValuer)(nil), true},
		{"NULL Valuer", sql.NullString{}, true},
		{"pointer to NULL Valuer", &sql.NullString{}, true},
		{"Valuer of a nil pointer", testValuer{v: nilInt}, true},
		{"zero", 0, false},
		{"pointer to zero", &n, false},
		{"empty string", "", false},
		{"nil bytes", []byte(nil), false}, // as GORM's clause.Eq: a nil slice is a value
		{"Valuer", sql.NullInt64{Int64: 0, Valid: true}, false},
		{"failing Valuer", testValuer{err: errors.New("no value")}, false},
	} {
		if got := isNull(tc.in); got != tc.want {
			t.Errorf("%s: isNull(%#v) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

// condModel is the model of the inspection tests.
type condModel struct {
	ID        uint
	Name      string
	OrgID     int
	Count     uint
	Status    string `gorm:"default:active"`
	ReadOnly  string `gorm:"->"`
	Code      sql.NullString
	CreatedAt time.Time
}

type otherModel struct {
	ID   uint
	Name string
}

// lookupStatement runs query, which ends in Find, on a DryRun DB with GORM's
// dummy dialector, and returns the statement as the Query callbacks see it
// just before gorm:query: scopes have run and the model is parsed.
func lookupStatement(t *testing.T, query func(db *gorm.DB) *gorm.DB) *gorm.Statement {
	t.Helper()
	db, err := gorm.Open(gormtests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var stmt *gorm.Statement
	if err := db.Callback().Query().Before("gorm:query").Register("test:capture", func(d *gorm.DB) {
		if stmt == nil { // not a subquery's, which GORM builds by running it in DryRun
			stmt = d.Statement
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := query(db).Error; err != nil {
		t.Fatalf("the query failed: %v", err)
	}
	if stmt == nil {
		t.Fatal("no query ran")
	}
	return stmt
}

// inspectLookup inspects stmt as the lookup of a FindOrCreate (strict false)
// or a CreateOrFind (strict true) into a *condModel, without the unique
// guard, which reads the database's catalog.
func inspectLookup(stmt *gorm.Statement, strict bool) (*call, error) {
	c := &call{
		p:      &Plugin{cfg: config{uniqueGuard: false}},
		tx:     stmt.DB,
		dest:   reflect.ValueOf(&condModel{}),
		strict: strict,
	}
	return c, c.inspect(stmt)
}

// wantEq is an expected equality: the field's Go name and the value.
type wantEq struct {
	field string
	value any
}

func equalitiesOf(c *call) []wantEq {
	var out []wantEq
	for _, e := range c.eqs {
		out = append(out, wantEq{e.field.Name, e.value})
	}
	return out
}

func TestInspect(t *testing.T) {
	where := func(query any, args ...any) func(*gorm.DB) *gorm.DB {
		return func(db *gorm.DB) *gorm.DB { return db.Where(query, args...).Find(&condModel{}) }
	}
	for _, tc := range []struct {
		name  string
		query func(*gorm.DB) *gorm.DB
		eqs   []wantEq // the equalities collected, when neither call fails
		// filters: some conditions are not equalities; they filter
		// FindOrCreate's reads, and CreateOrFind refuses them.
		filters   bool
		err       error // both calls fail with it
		strictErr error // CreateOrFind fails with it, FindOrCreate does not
	}{
		// Equalities, in every form GORM builds them.
		{name: "SQL with AND", query: where("name = ? AND org_id = ?", "a", 1), eqs: []wantEq{{"Name", "a"}, {"OrgID", 1}}},
		{name: "chained Where", query: func(db *gorm.DB) *gorm.DB {
			return db.Where("name = ?", "a").Where("org_id = ?", 2).Find(&condModel{})
		}, eqs: []wantEq{{"Name", "a"}, {"OrgID", 2}}},
		{name: "map", query: where(map[string]any{"org_id": 3, "name": "a"}), eqs: []wantEq{{"Name", "a"}, {"OrgID", 3}}},
		{name: "struct", query: where(&condModel{Name: "a", OrgID: 4}), eqs: []wantEq{{"Name", "a"}, {"OrgID", 4}}},
		{name: "column and value", query: where("name", "a"), eqs: []wantEq{{"Name", "a"}}},
		{name: "qualified column and value", query: where("cond_models.name", "a"), eqs: []wantEq{{"Name", "a"}}},
		{name: "inline primary key", query: func(db *gorm.DB) *gorm.DB { return db.Find(&condModel{}, 5) }, eqs: []wantEq{{"ID", 5}}},
		{name: "inline SQL", query: func(db *gorm.DB) *gorm.DB { return db.Find(&condModel{}, "name = ?", "a") }, eqs: []wantEq{{"Name", "a"}}},
		{name: "inline map", query: func(db *gorm.DB) *gorm.DB {
			return db.Find(&condModel{}, map[string]any{"name": "a"})
		}, eqs: []wantEq{{"Name", "a"}}},
		{name: "one-element list", query: where(map[string]any{"name": []string{"a"}}), eqs: []wantEq{{"Name", "a"}}},
		{name: "qualified by the table", query: where("cond_models.name = ?", "a"), eqs: []wantEq{{"Name", "a"}}},
		{name: "qualified and quoted", query: where(`"cond_models"."name" = ?`, "a"), eqs: []wantEq{{"Name", "a"}}},
		{name: "clause.Eq", query: where(clause.Eq{Column: clause.Column{Name: "name"}, Value: "a"}), eqs: []wantEq{{"Name", "a"}}},
		{name: "under an alias", query: func(db *gorm.DB) *gorm.DB {
			return db.Table("cond_models AS t").Where("t.name = ?", "a").Find(&condModel{})
		}, eqs: []wantEq{{"Name", "a"}}},
		{name: "column in another case", query: where("NAME = ?", "a"), eqs: []wantEq{{"Name", "a"}}},
		{name: "Go field name that is the column but for case", query: where("Name = ?", "a"), eqs: []wantEq{{"Name", "a"}}},
		{name: "string into a Valuer field", query: where("code = ?", "c"), eqs: []wantEq{{"Code", "c"}}},
		{name: "time as a string", query: where("created_at = ?", "2026-01-02 03:04:05"), eqs: []wantEq{{"CreatedAt", "2026-01-02 03:04:05"}}},
		{name: "same value twice, two types", query: where("org_id = ? AND org_id = ?", 1, "1"), eqs: []wantEq{{"OrgID", 1}, {"OrgID", "1"}}},
		{name: "same value twice", query: where("name = ? AND name = ?", "a", "a"), eqs: []wantEq{{"Name", "a"}, {"Name", "a"}}},
		{name: "integer into a string", query: where("name = ?", 5), eqs: []wantEq{{"Name", 5}}},
		{name: "decimal string into an integer", query: where("org_id = ?", "7"), eqs: []wantEq{{"OrgID", "7"}}},
		{name: "Valuer", query: where("code = ?", sql.NullString{String: "c", Valid: true}), eqs: []wantEq{{"Code", sql.NullString{String: "c", Valid: true}}}},
		{name: "non-zero value into a field with a default", query: where("status = ?", "x"), eqs: []wantEq{{"Status", "x"}}},
		{name: "time", query: where("created_at = ?", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), eqs: []wantEq{{"CreatedAt", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}},

		// Other conditions: filters.
		{name: "a range", query: func(db *gorm.DB) *gorm.DB {
			return db.Where("name = ?", "a").Where("org_id > ?", 1).Find(&condModel{})
		}, eqs: []wantEq{{"Name", "a"}}, filters: true},
		{name: "OR in SQL", query: where("name = ? OR org_id = ?", "a", 1), filters: true},
		{name: "Or", query: func(db *gorm.DB) *gorm.DB {
			return db.Where("name = ?", "a").Or("org_id = ?", 1).Find(&condModel{})
		}, eqs: []wantEq{{"Name", "a"}}, filters: true},
		{name: "Not", query: func(db *gorm.DB) *gorm.DB {
			return db.Where("name = ?", "a").Not("org_id = ?", 1).Find(&condModel{})
		}, eqs: []wantEq{{"Name", "a"}}, filters: true},
		{name: "IN in SQL", query: where("name IN ?", []string{"a"}), filters: true},
		{name: "a list in a map", query: where(map[string]any{"name": []string{"a", "b"}}), filters: true},
		{name: "inline primary keys", query: func(db *gorm.DB) *gorm.DB { return db.Find(&condModel{}, []int{1, 2}) }, filters: true},
		{name: "NULL", query: where(map[string]any{"name": nil}), filters: true},
		{name: "IS NULL", query: where("name IS NULL"), filters: true},
		{name: "a NULL Valuer", query: where("code = ?", sql.NullString{}), filters: true},
		{name: "an expression as the value", query: where("name = ?", gorm.Expr("'a'")), filters: true},
		{name: "a raw column", query: where(clause.Eq{Column: clause.Column{Name: "name", Raw: true}, Value: "a"}), filters: true},
		{name: "a literal", query: where("name = 'a'"), filters: true},
		{name: "a function of the column", query: where("lower(name) = ?", "a"), filters: true},
		{name: "a named argument", query: where("name = @name", sql.Named("name", "a")), filters: true},
		{name: "another table", query: where("others.name = ?", "a"), filters: true},
		{name: "the table's name under an alias", query: func(db *gorm.DB) *gorm.DB {
			return db.Table("cond_models AS t").Where("cond_models.name = ?", "a").Find(&condModel{})
		}, filters: true},

		// Refused by both calls.
		{name: "no condition", query: func(db *gorm.DB) *gorm.DB { return db.Find(&condModel{}) }, err: ErrNoConditions},
		{name: "only a zero struct", query: where(&condModel{}), err: ErrNoConditions},
		{name: "unknown column", query: where("nosuch = ?", 1), err: ErrUnknownColumn},
		{name: "unknown column in a map", query: where(map[string]any{"nosuch": 1}), err: ErrUnknownColumn},
		{name: "Go field name", query: where("OrgID = ?", 1), err: ErrUnknownColumn},
		{name: "Go field name in a map", query: where(map[string]any{"OrgID": 1}), err: ErrUnknownColumn},
		{name: "Go field name, qualified", query: where("cond_models.OrgID = ?", 1), err: ErrUnknownColumn},
		{name: "read-only field", query: where("read_only = ?", "x"), err: ErrUnknownColumn},
		{name: "fraction into an int", query: where("org_id = ?", 1.5), err: ErrUnsupportedCondition},
		{name: "-1 into a uint", query: where("count = ?", -1), err: ErrUnsupportedCondition},
		{name: "fraction into a string", query: where("name = ?", 1.5), err: ErrUnsupportedCondition},
		{name: "bytes into a string", query: where("name = ?", []byte("a")), err: ErrUnsupportedCondition},
		{name: "hexadecimal string into an int", query: where("org_id = ?", "0x10"), err: ErrUnsupportedCondition},
		{name: "octal string into an int", query: where("org_id = ?", "010"), err: ErrUnsupportedCondition},
		{name: "a value the field cannot take", query: where("org_id = ?", "abc"), err: ErrUnsupportedCondition},
		{name: "two values for one field", query: where("name = ? AND name = ?", "a", "b"), err: ErrUnsupportedCondition},
		{name: "two values for one field, two forms", query: func(db *gorm.DB) *gorm.DB {
			return db.Where("org_id = ?", 1).Where(map[string]any{"org_id": 2}).Find(&condModel{})
		}, err: ErrUnsupportedCondition},
		{name: "zero into a field with a default", query: where("status = ?", ""), err: ErrUnsupportedCondition},
		{name: "zero into the auto-increment key", query: where("id = ?", 0), err: ErrUnsupportedCondition},
		{name: "zero into an auto-create time", query: where("created_at = ?", time.Time{}), err: ErrUnsupportedCondition},
		{name: "a table expression with a subquery", query: func(db *gorm.DB) *gorm.DB {
			return db.Table("(?) AS t", db.Model(&condModel{})).Where("t.name = ?", "a").Find(&condModel{})
		}, err: ErrUnsupportedCondition},
		{name: "another model", query: func(db *gorm.DB) *gorm.DB { return db.Where("name = ?", "a").Find(&otherModel{}) }, err: ErrInvalidDest},

		// An equality that fails after a filter: CreateOrFind stops at the filter.
		{name: "filter, then unknown column", query: func(db *gorm.DB) *gorm.DB {
			return db.Where("org_id > ?", 1).Where("nosuch = ?", 1).Find(&condModel{})
		}, err: ErrUnknownColumn, strictErr: ErrUnsupportedCondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stmt := lookupStatement(t, tc.query)
			for _, strict := range []bool{false, true} {
				c, err := inspectLookup(stmt, strict)
				want := tc.err
				if strict && tc.strictErr != nil {
					want = tc.strictErr
				} else if strict && want == nil && tc.filters {
					want = ErrUnsupportedCondition
				}
				if want != nil {
					if !errors.Is(err, want) {
						t.Errorf("strict %v: error %v, want %v", strict, err, want)
					}
					continue
				}
				if err != nil {
					t.Errorf("strict %v: %v", strict, err)
					continue
				}
				if got := equalitiesOf(c); !reflect.DeepEqual(got, tc.eqs) {
					t.Errorf("strict %v: equalities %v, want %v", strict, got, tc.eqs)
				}
			}
		})
	}
}

// inspect records the table, the model and whether the read locks.
func TestInspectRecords(t *testing.T) {
	stmt := lookupStatement(t, func(db *gorm.DB) *gorm.DB {
		return db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", "a").Find(&condModel{})
	})
	c, err := inspectLookup(stmt, false)
	if err != nil {
		t.Fatal(err)
	}
	if !c.locked || c.table != "cond_models" || c.catalogTable != "cond_models" || c.insertTable != "" || c.schema != stmt.Schema {
		t.Errorf("locked %v, table %q, catalog table %q, insert table %q, schema %v", c.locked, c.table, c.catalogTable, c.insertTable, c.schema)
	}

	stmt = lookupStatement(t, func(db *gorm.DB) *gorm.DB {
		return db.Table("cond_models AS t").Where("t.name = ?", "a").Find(&condModel{})
	})
	if c, err = inspectLookup(stmt, true); err != nil {
		t.Fatal(err)
	}
	if c.locked || c.table != "t" || c.catalogTable != "cond_models" || c.insertTable != "cond_models" {
		t.Errorf("alias: locked %v, table %q, catalog table %q, insert table %q", c.locked, c.table, c.catalogTable, c.insertTable)
	}

	// A second inspection starts over.
	stmt = lookupStatement(t, func(db *gorm.DB) *gorm.DB { return db.Where("org_id = ?", 9).Find(&condModel{}) })
	if err := c.inspect(stmt); err != nil {
		t.Fatal(err)
	}
	if got, want := equalitiesOf(c), []wantEq{{"OrgID", 9}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a second inspection: %v, want %v", got, want)
	}
}

// A nil condition, which no chain builds, is refused by both calls.
func TestInspectNilCondition(t *testing.T) {
	stmt := lookupStatement(t, func(db *gorm.DB) *gorm.DB { return db.Where("name = ?", "a").Find(&condModel{}) })
	stmt.Clauses["WHERE"] = clause.Clause{Name: "WHERE", Expression: clause.Where{Exprs: []clause.Expression{nil}}}
	for _, strict := range []bool{false, true} {
		if _, err := inspectLookup(stmt, strict); !errors.Is(err, ErrUnsupportedCondition) {
			t.Errorf("strict %v: error %v, want %v", strict, err, ErrUnsupportedCondition)
		}
	}
}

// The error names the condition, without its values.
func TestInspectErrorRendersCondition(t *testing.T) {
	stmt := lookupStatement(t, func(db *gorm.DB) *gorm.DB {
		return db.Where("name = ?", "secret").Where("org_id > ?", 12345).Find(&condModel{})
	})
	_, err := inspectLookup(stmt, true)
	if !errors.Is(err, ErrUnsupportedCondition) {
		t.Fatalf("error %v, want %v", err, ErrUnsupportedCondition)
	}
	if msg := err.Error(); !strings.Contains(msg, "org_id >") || strings.Contains(msg, "12345") || strings.Contains(msg, "secret") {
		t.Errorf("error %q: want the condition, without values", msg)
	}
}
