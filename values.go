package safefind

import (
	"database/sql/driver"
	"math/big"
	"reflect"
	"strings"
	"time"
)

// storedAsGiven reports whether the value a field stores, after GORM set it
// from a condition's value, is the value the condition compares with, as the
// database compares them: equal values of any Go types (5 and "5" and 5.0,
// "1.50" and 1.5), a time and a string the database parses. It is false for
// what changes on the way in: a fraction into an integer or a string
// ("2" for 1.5), a negative number into an unsigned one, a string parsed in
// another base ("0x10", "010"), bytes into a string and back.
func storedAsGiven(stored, given any) bool {
	if sameBasic(stored, given) {
		return true // the common case, without encoding either
	}
	s, err := keyValue(stored)
	if err != nil {
		return false
	}
	g, err := keyValue(given)
	if err != nil {
		return false
	}
	if keyID([]any{s}) == keyID([]any{g}) {
		return true
	}
	if sn, ok := decimal(s); ok {
		if gn, ok := decimal(g); ok {
			return sn.Cmp(gn) == 0
		}
	}
	if _, ok := s.(time.Time); ok {
		_, ok := g.(string)
		return ok // the database parses the string as it stores the time
	}
	return false
}

// decimal returns v as an exact number: an integer, a float, or a string
// of decimal digits with an optional sign and fraction.
func decimal(v any) (*big.Rat, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return new(big.Rat).SetInt64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return new(big.Rat).SetUint64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		r := new(big.Rat)
		if r.SetFloat64(rv.Float()) == nil {
			return nil, false
		}
		return r, true
	case reflect.String:
		s := strings.TrimPrefix(strings.TrimPrefix(rv.String(), "-"), "+")
		whole, frac, _ := strings.Cut(s, ".")
		if whole == "" || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
			return nil, false
		}
		return new(big.Rat).SetString(rv.String())
	}
	return nil, false
}

// keyValue returns the value a key is compared by: a driver.Valuer's value,
// or v itself; nil for NULL.
func keyValue(v any) (any, error) {
	if isNull(v) {
		return nil, nil
	}
	if valuer, ok := v.(driver.Valuer); ok {
		return valuer.Value()
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer {
		return keyValue(rv.Elem().Interface())
	}
	return v, nil
}

// sameBasic reports whether a and b are equal values of one type of a basic
// kind (a string, a number, a boolean).
func sameBasic(a, b any) bool {
	t := reflect.TypeOf(a)
	return t != nil && t == reflect.TypeOf(b) && basicKind(t.Kind()) && a == b
}

// basicKind reports whether k is a string, a boolean or a number.
func basicKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}
