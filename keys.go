package safefind

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// keyID encodes key values so that equal keys, and only they, give equal
// strings.
func keyID(vals []any) string {
	var sb strings.Builder
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			sb.WriteString("s" + strconv.Itoa(len(v)) + ":" + v)
		case []byte:
			sb.WriteString("b" + strconv.Itoa(len(v)) + ":" + string(v))
		case time.Time:
			sb.WriteString("t" + v.UTC().Format(time.RFC3339Nano))
		case bool:
			sb.WriteString("o" + strconv.FormatBool(v))
		default:
			switch rv := reflect.ValueOf(v); rv.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				sb.WriteString("i" + strconv.FormatInt(rv.Int(), 10))
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				sb.WriteString("i" + strconv.FormatUint(rv.Uint(), 10))
			case reflect.Float32, reflect.Float64:
				sb.WriteString("f" + strconv.FormatFloat(rv.Float(), 'g', -1, 64))
			case reflect.String:
				sb.WriteString("s" + strconv.Itoa(rv.Len()) + ":" + rv.String())
			default:
				s := fmt.Sprintf("%T:%v", v, v)
				sb.WriteString("x" + strconv.Itoa(len(s)) + ":" + s)
			}
		}
		sb.WriteByte(0)
	}
	return sb.String()
}

// compareKeys orders keys, the same way in every process, so that
// concurrent batches insert overlapping keys in the same order.
func compareKeys(a, b []any) int {
	for i := range a {
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareValues(a, b any) int {
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case []byte:
		if y, ok := b.([]byte); ok {
			return bytes.Compare(x, y)
		}
	case time.Time:
		if y, ok := b.(time.Time); ok {
			return x.Compare(y)
		}
	}
	ra, rb := reflect.ValueOf(a), reflect.ValueOf(b)
	if fa, ok := number(ra); ok {
		if fb, ok := number(rb); ok {
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			// Beyond float64's precision, fall through to the encoding.
		}
	}
	return strings.Compare(keyID([]any{a}), keyID([]any{b}))
}

func number(v reflect.Value) (float64, bool) {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), !math.IsNaN(v.Float())
	}
	return 0, false
}
