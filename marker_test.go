package safefind

import (
	"sync"
	"testing"

	"gorm.io/gorm"
	gormtests "gorm.io/gorm/utils/tests"
)

// The marker's reach, through GORM's own callback chains in DryRun (GORM's
// dummy dialector builds statements and sends nothing; the tests module
// runs the same calls on the real databases): a statement derived from a
// marked one by a clone is the call's, one derived by a new session (a
// hook's queries, association saves) is not.

type markedOwner struct {
	ID   uint
	Name string
	Pets []markedPet `gorm:"foreignKey:OwnerID"`
}

type markedPet struct {
	ID      uint
	OwnerID uint
	Name    string
}

// BeforeCreate runs a query of its own, of the same table.
func (o *markedOwner) BeforeCreate(tx *gorm.DB) error {
	return tx.Where("name <> ?", o.Name).Find(&[]markedOwner{}).Error
}

func TestMarkerReach(t *testing.T) {
	db, err := gorm.Open(gormtests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string][]*call{} // table -> the call of each statement
	)
	record := func(db *gorm.DB) {
		mu.Lock()
		defer mu.Unlock()
		seen[db.Statement.Table] = append(seen[db.Statement.Table], callOf(db))
	}
	for _, err := range []error{
		db.Callback().Query().Before("gorm:query").Register("test:record", record),
		db.Callback().Create().Before("gorm:create").Register("test:record", record),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	c := &call{}
	marked := mark(db.Session(&gorm.Session{}), c).Session(&gorm.Session{})

	// A clone of the marked statement, through a scope, is the call's.
	marked.Scopes(func(d *gorm.DB) *gorm.DB { return d.Session(&gorm.Session{}).Where("name = ?", "a") }).Find(&markedOwner{})
	// The INSERT's hook queries the table; its associations are saved.
	marked.Create(&markedOwner{Name: "a", Pets: []markedPet{{Name: "p"}}})
	// Unmarked statements on the same DB are no call's.
	db.Where("name = ?", "b").Find(&markedOwner{})

	want := map[string][]*call{
		"marked_owners": {c, nil /* the hook's query */, c /* the INSERT */, nil /* unmarked */},
		"marked_pets":   {nil /* the association's INSERT */},
	}
	for table, calls := range want {
		if got := seen[table]; !equalCalls(got, calls) {
			t.Errorf("%s: statements' calls %v, want %v", table, got, calls)
		}
	}
}

func equalCalls(a, b []*call) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
