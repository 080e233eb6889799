package safefind

import (
	"reflect"
	"testing"

	"gorm.io/gorm"
	gormtests "gorm.io/gorm/utils/tests"
)

// safefind reads Attrs and Assign from gorm.Statement's unexported fields:
// this pins them against the GORM in go.mod, so that an upgrade that moves
// them fails here (and Initialize refuses it) instead of safefind ignoring
// Attrs and Assign.
func TestChainValuesPinned(t *testing.T) {
	if attrsIndex == nil || assignsIndex == nil {
		t.Fatal("gorm.Statement has no attrs/assigns fields of type []interface{}")
	}
	db, err := gorm.Open(gormtests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	chain := db.Where("name = ?", "a").Attrs("age", 20).Assign(map[string]any{"note": "x"})
	if got, want := chainValues(chain.Statement, attrsIndex), []any{"age", 20}; !reflect.DeepEqual(got, want) {
		t.Errorf("attrs %v, want %v", got, want)
	}
	if got, want := chainValues(chain.Statement, assignsIndex), []any{map[string]any{"note": "x"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("assigns %v, want %v", got, want)
	}
	if got := chainValues(db.Statement, attrsIndex); len(got) != 0 {
		t.Errorf("attrs of a bare DB %v, want none", got)
	}
}
