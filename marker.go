package safefind

import "gorm.io/gorm"

// callKey carries the call in the settings of safefind's own statements.
// Settings follow a statement into its clones (a scope may clone it) and
// into preload queries; a callback knows the call's own statement by its
// destination, which is the call's alone.
const callKey = "safefind:call"

// callOf returns the call a statement belongs to, or nil.
func callOf(db *gorm.DB) *call {
	v, ok := db.Get(callKey)
	if !ok {
		return nil
	}
	c, ok := v.(*call)
	if !ok || db.Statement.Dest != c.target {
		return nil
	}
	return c
}
