package safefind

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"math"
	"math/big"
	"reflect"
	"testing"
	"time"
)

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

func TestDecimal(t *testing.T) {
	type digits string // a named string type reads as its string
	rat := func(s string) *big.Rat {
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			panic(s)
		}
		return r
	}
	for _, tc := range []struct {
		in   any
		want *big.Rat // nil: not a decimal
	}{
		{5, rat("5")},
		{int8(-3), rat("-3")},
		{int16(300), rat("300")},
		{int32(-70000), rat("-70000")},
		{int64(math.MinInt64), rat("-9223372036854775808")},
		{uint(7), rat("7")},
		{uint8(255), rat("255")},
		{uint64(math.MaxUint64), rat("18446744073709551615")},
		{1.5, rat("3/2")},
		{-0.25, rat("-1/4")},
		{float32(0.5), rat("1/2")},
		{float32(0.1), rat("0.100000001490116119384765625")}, // the float32's exact value
		{0.1, rat("0.1000000000000000055511151231257827021181583404541015625")},
		{1e300, new(big.Rat).SetFloat64(1e300)},
		{"5", rat("5")},
		{"-5", rat("-5")},
		{"+5", rat("5")},
		{"007", rat("7")},
		{"1.50", rat("3/2")},
		{"-0.0", rat("0")},
		{"1.", rat("1")},
		{"123456789012345678901234567890.5", rat("123456789012345678901234567890.5")}, // beyond float64 and int64
		{digits("42"), rat("42")},

		{math.NaN(), nil},
		{math.Inf(1), nil},
		{math.Inf(-1), nil},
		{"", nil},
		{"-", nil},
		{".5", nil},
		{"1.2.3", nil},
		{"1e3", nil},
		{"0x10", nil},
		{" 1", nil},
		{"1 ", nil},
		{"1,5", nil},
		{"--1", nil},
		{"-+1", nil},
		{"abc", nil},
		{true, nil},
		{nil, nil},
		{[]byte("5"), nil},
		{time.Unix(5, 0), nil},
		{new(int), nil}, // a pointer is not followed
	} {
		got, ok := decimal(tc.in)
		if ok != (tc.want != nil) || ok && got.Cmp(tc.want) != 0 {
			t.Errorf("decimal(%#v) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}

// testValuer is a driver.Valuer with a value receiver.
type testValuer struct {
	v   driver.Value
	err error
}

func (v testValuer) Value() (driver.Value, error) { return v.v, v.err }

// testPtrValuer is a driver.Valuer only through a pointer.
type testPtrValuer struct{ v int64 }

func (v *testPtrValuer) Value() (driver.Value, error) { return v.v, nil }

func TestKeyValue(t *testing.T) {
	errValue := errors.New("no value")
	n := 5
	pn := &n
	var nilInt *int
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   any
		want any
		err  error
	}{
		{"nil", nil, nil, nil},
		{"int", 5, 5, nil},
		{"string", "a", "a", nil},
		{"bytes", []byte("a"), []byte("a"), nil},
		{"time", at, at, nil},
		{"pointer", &n, 5, nil},
		{"pointer to pointer", &pn, 5, nil},
		{"nil pointer", nilInt, nil, nil},
		{"pointer to nil pointer", &nilInt, nil, nil},
		{"Valuer", sql.NullString{String: "a", Valid: true}, "a", nil},
		{"NULL Valuer", sql.NullString{}, nil, nil},
		{"pointer to Valuer", &sql.NullInt64{Int64: 3, Valid: true}, int64(3), nil},
		{"pointer to NULL Valuer", &sql.NullInt64{}, nil, nil},
		{"nil pointer to Valuer", (*sql.NullInt64)(nil), nil, nil},
		{"Valuer of nil", testValuer{v: nil}, nil, nil},
		{"Valuer of a nil pointer", testValuer{v: nilInt}, nil, nil},
		{"failing Valuer", testValuer{v: 1, err: errValue}, nil, errValue},
		{"pointer-receiver Valuer", &testPtrValuer{v: 9}, int64(9), nil},
		{"pointer-receiver Valuer, by value", testPtrValuer{v: 9}, testPtrValuer{v: 9}, nil}, // not a Valuer
		{"nil pointer-receiver Valuer", (*testPtrValuer)(nil), nil, nil},
	} {
		got, err := keyValue(tc.in)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: keyValue(%#v) error %v, want %v", tc.name, tc.in, err, tc.err)
			continue
		}
		if tc.err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: keyValue(%#v) = %#v, want %#v", tc.name, tc.in, got, tc.want)
		}
	}
}
