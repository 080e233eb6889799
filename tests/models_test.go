package tests

import (
	"sync/atomic"

	"gorm.io/gorm"
)

// Tag has a single-column unique key.
type Tag struct {
	ID   uint
	Name string `gorm:"size:64;uniqueIndex"`
	Note string `gorm:"size:64"`
}

// Member has a composite unique key and a second unique column.
type Member struct {
	ID     uint
	OrgID  uint   `gorm:"uniqueIndex:idx_org_email"`
	Email  string `gorm:"size:100;uniqueIndex:idx_org_email"`
	Handle string `gorm:"size:64;uniqueIndex"`
	Age    int
}

// Account has create hooks and soft deletes.
type Account struct {
	ID        uint
	Email     string `gorm:"size:100;uniqueIndex"`
	Plan      string `gorm:"size:20"`
	DeletedAt gorm.DeletedAt
}

type hookKey struct{}

// AfterCreate counts into the counter its statement's context carries.
func (a *Account) AfterCreate(tx *gorm.DB) error {
	countInto(tx, hookKey{})
	return nil
}

// countInto adds one to the *atomic.Int64 that the statement's context
// carries under key, if any: how the test models' hooks say they ran.
func countInto(tx *gorm.DB, key any) {
	if n, ok := tx.Statement.Context.Value(key).(*atomic.Int64); ok {
		n.Add(1)
	}
}
