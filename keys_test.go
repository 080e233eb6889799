package safefind

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

type keyCode string // a named string type: compared as the string it holds

type keyPoint struct{ X, Y int }

type keyPoint2 struct{ X, Y int } // prints as keyPoint does

// Equal keys give equal ids: each group holds one key, written several ways.
func TestKeyIDEqual(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	now := time.Now() // with a monotonic clock reading
	for _, group := range [][][]any{
		{{"a"}, {"a"}, {keyCode("a")}},
		{{""}, {""}},
		{{[]byte("a")}, {[]byte("a")}, {[]byte{'a'}}},
		{{[]byte{}}, {[]byte(nil)}},
		{{1}, {int8(1)}, {int16(1)}, {int32(1)}, {int64(1)}, {uint(1)}, {uint8(1)}, {uint16(1)}, {uint32(1)}, {uint64(1)}},
		{{-7}, {int64(-7)}},
		{{uint64(math.MaxUint64)}, {uint64(math.MaxUint64)}},
		{{1.5}, {float32(1.5)}},
		{{true}, {true}},
		{
			{at},
			{at.In(time.FixedZone("east", 5*3600))},
			{at.In(time.FixedZone("west", -3*3600-1800))},
			{time.Date(2026, 1, 2, 8, 4, 5, 6, time.FixedZone("east", 5*3600))},
		},
		{{now}, {now.Round(0)}, {now.UTC()}},
		{{keyPoint{1, 2}}, {keyPoint{1, 2}}},
		{{"a", 1, at}, {keyCode("a"), int64(1), at.Local()}},
		{{}, nil},
	} {
		want := keyID(group[0])
		for _, key := range group[1:] {
			if got := keyID(key); got != want {
				t.Errorf("keyID(%#v) = %q, keyID(%#v) = %q: want equal", group[0], want, key, got)
			}
		}
	}
}

// Different keys give different ids, however alike they print.
func TestKeyIDDistinct(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	keys := [][]any{
		{"1"}, {1}, {1.5}, {int64(2)}, {-1}, {uint64(math.MaxUint64)}, {float32(0.1)}, {0.1},
		{"a"}, {[]byte("a")}, {"A"}, {"a "}, {""}, {[]byte("")},
		{"true"}, {true}, {false}, {"false"},
		{at}, {at.Add(time.Nanosecond)}, {at.Format(time.RFC3339Nano)}, {"t" + at.Format(time.RFC3339Nano)},
		// the same wall clock in another zone is another instant
		{time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("east", 3600))},
		{nil}, {"<nil>"},
		{keyPoint{1, 2}}, {keyPoint{2, 1}}, {keyPoint2{1, 2}}, {"{1 2}"},
		// the boundaries between values are kept
		{"a", "b"}, {"ab"}, {"a", "", "b"}, {"a\x00s1:b"}, {"a\x00", "b"}, {"a", "\x00b"},
		{[]byte("a"), "b"}, {"a", []byte("b")},
		{1, 2}, {12}, {"1", "2"}, {1, "2"},
		{}, {"", ""},
	}
	seen := map[string]int{}
	for i, k := range keys {
		id := keyID(k)
		if j, ok := seen[id]; ok {
			t.Errorf("keyID(%#v) = keyID(%#v) = %q", k, keys[j], id)
		}
		seen[id] = i
	}
}

func cmpSign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestCompareValues(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	east := time.FixedZone("east", 5*3600)
	for _, tc := range []struct {
		a, b any
		want int
	}{
		// strings and bytes: byte order
		{"a", "b", -1},
		{"a", "a", 0},
		{"", "a", -1},
		{"ab", "b", -1}, // not by length
		{"B", "a", -1},
		{"é", "z", 1},
		{[]byte("a"), []byte("b"), -1},
		{[]byte("ab"), []byte("b"), -1},
		{[]byte("a"), []byte("a"), 0},
		{keyCode("a"), keyCode("b"), -1},
		{keyCode("a"), "a", 0},

		// times: by instant, whatever the zone
		{at, at.Add(time.Nanosecond), -1},
		{at.Add(time.Second), at, 1},
		{at, at.In(east), 0},
		{at.Add(-time.Minute).In(east), at, -1}, // a later wall clock, an earlier instant

		// numbers, of any kinds: by value
		{1, 2, -1},
		{-5, int64(3), -1},
		{int(3), uint(3), 0},
		{int8(-1), uint64(2), -1},
		{uint64(2), int8(-1), 1},
		{1, 1.5, -1},
		{1.5, 1, 1},
		{float32(2.5), int64(2), 1},
		{uint64(math.MaxUint64), int64(math.MaxInt64), 1},
		{int64(math.MinInt64), -1e300, 1},
		{math.Inf(-1), int64(math.MinInt64), -1},
		{math.Inf(1), uint64(math.MaxUint64), 1},
		{10, 9, 1}, // not as text
		{-2, -10, 1},

		// beyond float64's precision: by the encoding, which for integers
		// of as many digits is their order
		{int64(1 << 53), int64(1<<53 + 1), -1},
		{int64(1<<53 + 1), int64(1 << 53), 1},
		{uint64(math.MaxUint64 - 1), uint64(math.MaxUint64), -1},
	} {
		if got := cmpSign(compareValues(tc.a, tc.b)); got != tc.want {
			t.Errorf("compareValues(%#v, %#v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := cmpSign(compareValues(tc.b, tc.a)); got != -tc.want {
			t.Errorf("compareValues(%#v, %#v) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// compareValues is a total order, consistent with keyID: 0 for equal keys
// only, antisymmetric, transitive, across the kinds a key holds and where
// numbers that float64 cannot tell apart fall back to the encoding.
func TestCompareValuesTotalOrder(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mixed := []any{
		"", "a", "ab", "b", "B", "a\x00", "10", "9",
		[]byte(""), []byte("a"), []byte("ab"), []byte("b"),
		at, at.In(time.FixedZone("east", 3600)), at.Add(-time.Hour).In(time.FixedZone("east", 3600)), at.Add(time.Nanosecond),
		true, false,
		0, -1, 1, int8(1), uint64(1), 1.0, 1.5, float32(1.5), -0.5, 2, 10, 9, math.Inf(1), math.Inf(-1),
		// float64 cannot tell these apart: 2^53 and 2^53+1; 9999999999999999999 and 1e19
		int64(1 << 53), int64(1<<53 + 1), uint64(1 << 53), float64(1 << 53),
		uint64(9999999999999999999), uint64(10000000000000000000), 1e19, uint64(10000000000000004096),
	}
	floats := []any{math.NaN(), math.Inf(-1), -1.5, math.Copysign(0, -1), 0.0, 0.5, 1e300, math.Inf(1), math.NaN()}
	for name, vals := range map[string][]any{"mixed": mixed, "floats": floats} {
		for _, a := range vals {
			for _, b := range vals {
				ab, ba := cmpSign(compareValues(a, b)), cmpSign(compareValues(b, a))
				if ab != -ba {
					t.Errorf("%s: compareValues(%#v, %#v) = %d but compareValues(%#v, %#v) = %d", name, a, b, ab, b, a, ba)
				}
				if (ab == 0) != (keyID([]any{a}) == keyID([]any{b})) {
					t.Errorf("%s: compareValues(%#v, %#v) = %d, but the keys are equal: %v", name, a, b, ab, keyID([]any{a}) == keyID([]any{b}))
				}
				for _, c := range vals {
					if ab <= 0 && compareValues(b, c) <= 0 && compareValues(a, c) > 0 {
						t.Errorf("%s: not transitive: %#v <= %#v <= %#v but %#v > %#v", name, a, b, c, a, c)
					}
				}
			}
		}
	}
	// NaN, which no number orders, comes after every other float64 and
	// equals itself.
	for _, f := range floats {
		if want := map[bool]int{true: 0, false: 1}[math.IsNaN(f.(float64))]; cmpSign(compareValues(math.NaN(), f)) != want {
			t.Errorf("compareValues(NaN, %v) = %d, want %d", f, compareValues(math.NaN(), f), want)
		}
	}
}

func TestCompareKeys(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		a, b []any
		want int
	}{
		{[]any{}, []any{}, 0},
		{[]any{"a", 1}, []any{"a", 1}, 0},
		{[]any{"a", 1}, []any{"a", int64(1)}, 0},
		{[]any{"a", 2}, []any{"a", 10}, -1}, // numbers by value
		{[]any{"a", 10}, []any{"b", 1}, -1}, // the first value decides
		{[]any{"b", 1}, []any{"a", 10}, 1},
		{[]any{1, "b"}, []any{1, "a"}, 1},
		{[]any{at, "x"}, []any{at.In(time.FixedZone("east", 3600)), "x"}, 0},
		{[]any{at, "x"}, []any{at.Add(1), "a"}, -1},
	} {
		if got := cmpSign(compareKeys(tc.a, tc.b)); got != tc.want {
			t.Errorf("compareKeys(%#v, %#v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// Sorting keys with compareKeys gives one order, whatever the input order:
// concurrent batches insert overlapping keys in the same order.
func TestCompareKeysSortIsDeterministic(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var keys [][]any
	for _, org := range []any{1, 2, 10, int64(1 << 53), int64(1<<53 + 1)} {
		for _, name := range []string{"", "a", "ab", "b", "B"} {
			for _, t := range []time.Time{at, at.Add(time.Second), at.Add(-time.Hour)} {
				keys = append(keys, []any{org, name, t})
			}
		}
	}
	ids := func(ks [][]any) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			out[i] = keyID(k)
		}
		return out
	}
	want := slices.Clone(keys)
	slices.SortFunc(want, compareKeys)
	for i := 1; i < len(want); i++ {
		if compareKeys(want[i-1], want[i]) >= 0 {
			t.Fatalf("sorted keys %d and %d not in strict order: %#v, %#v", i-1, i, want[i-1], want[i])
		}
	}
	if got := want[0]; compareValues(got[0], 1) != 0 || got[1] != "" || !got[2].(time.Time).Equal(at.Add(-time.Hour)) {
		t.Errorf("first key %#v, want [1 \"\" %v]", got, at.Add(-time.Hour))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		shuffled := make([][]any, len(keys))
		for i, k := range keys {
			shuffled[i] = slices.Clone(k)
		}
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		// Another process may hold the same keys in other Go types.
		for _, k := range shuffled[:len(shuffled)/2] {
			if n, ok := k[0].(int); ok {
				k[0] = int64(n)
			}
		}
		slices.SortFunc(shuffled, compareKeys)
		if !slices.Equal(ids(shuffled), ids(want)) {
			t.Fatalf("sorting a shuffled copy gave another order")
		}
	}
}
