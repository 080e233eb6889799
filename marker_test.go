package safefind

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"gorm.io/gorm"
	gormtests "gorm.io/gorm/utils/tests"
)

// The marker's reach, through GORM's own callback chains in DryRun (GORM's
// dummy dialector builds statements and sends nothing; the tests module
// runs the same calls on the real databases): a statement derived from a
// marked one by a clone is the call's, one derived by a new session (a
// hook's queries on its tx, association saves) is not. A hook's clone of
// the INSERT (tx.WithContext, tx.Session) keeps the marker, as GORM clones
// it; skipped then leaves its row alone.

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

// BeforeCreate runs queries of its own, of the same table, on its tx and on
// a clone of it, and creates another owner on a clone.
func (o *markedOwner) BeforeCreate(tx *gorm.DB) error {
	if err := tx.Where("name <> ?", o.Name).Find(&[]markedOwner{}).Error; err != nil {
		return err
	}
	if o.Name != "a" {
		return nil
	}
	if err := tx.WithContext(context.Background()).Where("name = ?", "x").Find(&[]markedOwner{}).Error; err != nil {
		return err
	}
	return tx.Session(&gorm.Session{}).Create(&markedOwner{Name: "cloned"}).Error
}

// seen is what a test callback saw of one statement.
type seen struct {
	call      *call
	skipHooks bool // after skipped, for an INSERT
}

func TestMarkerReach(t *testing.T) {
	db, err := gorm.Open(gormtests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got = map[string][]seen{} // table -> each statement
	)
	record := func(db *gorm.DB) {
		mu.Lock()
		defer mu.Unlock()
		got[db.Statement.Table] = append(got[db.Statement.Table], seen{callOf(db), db.Statement.SkipHooks})
	}
	for _, err := range []error{
		db.Callback().Query().Before("gorm:query").Register("test:record", record),
		db.Callback().Create().After("gorm:create").Register("safefind:skipped", skipped),
		db.Callback().Create().After("safefind:skipped").Register("test:record", record),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	owner := markedOwner{Name: "a", Pets: []markedPet{{Name: "p"}}}
	c := &call{dest: reflect.ValueOf(&owner)}
	marked := lookupFor(db.Session(&gorm.Session{}), c)

	// A clone of the marked statement, through a scope, is the call's.
	marked.Scopes(func(d *gorm.DB) *gorm.DB { return d.Session(&gorm.Session{}).Where("name = ?", "a") }).Find(&markedOwner{})
	// The INSERT of the call's row: its hook's statements, and its
	// associations. In DryRun nothing is inserted, so skipped takes the
	// call's own row for skipped.
	mark(db.Session(&gorm.Session{NewDB: true}).Table("marked_owners"), c).Create(&owner)
	// Unmarked statements on the same DB are no call's.
	db.Where("name = ?", "b").Find(&markedOwner{})

	want := map[string][]seen{
		"marked_owners": {
			{call: c},                  // the scope's clone of the lookup
			{},                         // the hook's query on its tx
			{call: c},                  // the hook's query on tx.WithContext: a clone
			{},                         // the cloned INSERT's hook's query on its tx
			{call: c},                  // the hook's INSERT on tx.Session: a clone, not the call's row
			{call: c, skipHooks: true}, // the call's INSERT
			{},                         // unmarked
		},
		"marked_pets": {{}}, // the association's INSERT
	}
	for table, w := range want {
		if g := got[table]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: statements %+v, want %+v", table, g, w)
		}
	}
}
