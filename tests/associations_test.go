package tests

import (
	"context"
	"fmt"
	"testing"

	"github.com/safefind/safefind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Associations are saved as Create saves them, when and only when the call
// creates the row, and atomically with it: a call that finds the row, or
// loses the race, leaves none of them behind.

// Company is a customer's belongs-to association.
type Company struct {
	ID   uint
	Name string `gorm:"size:64"`
}

// Customer has one of each kind of association but many-to-many.
type Customer struct {
	ID        uint
	Name      string `gorm:"size:64;uniqueIndex"`
	Age       int
	CompanyID *uint
	Company   *Company
	Wallet    *Wallet
	Orders    []Order
}

// Wallet is a customer's has-one association.
type Wallet struct {
	ID         uint
	CustomerID uint
	Number     string `gorm:"size:32"`
}

// Order is a customer's has-many association.
type Order struct {
	ID         uint
	CustomerID uint
	Item       string `gorm:"size:32"`
}

var customerTables = []any{&Company{}, &Customer{}, &Wallet{}, &Order{}}

// customerWorld is what the tables hold, ids included.
type customerWorld struct {
	Customers []Customer
	Companies []Company
	Wallets   []Wallet
	Orders    []Order
}

func (e *env) customerWorld(t *testing.T) customerWorld {
	t.Helper()
	var w customerWorld
	require.NoError(t, e.other.Order("id").Find(&w.Customers).Error)
	require.NoError(t, e.other.Order("id").Find(&w.Companies).Error)
	require.NoError(t, e.other.Order("id").Find(&w.Wallets).Error)
	require.NoError(t, e.other.Order("id").Find(&w.Orders).Error)
	return w
}

// linked is a world with its links resolved and its ids left out: a
// sequence that a rolled back INSERT consumed gives other ids, not other
// data.
type linked struct {
	Customer                              string // name and age
	Company                               string
	Wallets, Orders                       []string
	Customers, Companies, Walletss, Items int
}

func (w customerWorld) linked() []linked {
	companies := map[uint]string{}
	for _, c := range w.Companies {
		companies[c.ID] = c.Name
	}
	var out []linked
	for _, c := range w.Customers {
		l := linked{Customer: fmt.Sprintf("%s/%d", c.Name, c.Age),
			Customers: len(w.Customers), Companies: len(w.Companies), Walletss: len(w.Wallets), Items: len(w.Orders)}
		if c.CompanyID != nil {
			l.Company = companies[*c.CompanyID]
		}
		for _, wl := range w.Wallets {
			if wl.CustomerID == c.ID {
				l.Wallets = append(l.Wallets, wl.Number)
			}
		}
		for _, o := range w.Orders {
			if o.CustomerID == c.ID {
				l.Orders = append(l.Orders, o.Item)
			}
		}
		out = append(out, l)
	}
	return out
}

func newCustomer(name string) Customer {
	return Customer{
		Name:    name,
		Company: &Company{Name: "co of " + name},
		Wallet:  &Wallet{Number: "w-" + name},
		Orders:  []Order{{Item: "first"}, {Item: "second"}},
	}
}

func TestAssociationsParity(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		cases := []struct {
			name  string
			seed  bool // "ann" exists, without associations
			dest  func() Customer
			chain func(db *gorm.DB) *gorm.DB
		}{
			{"dest's associations, miss", false, func() Customer { return newCustomer("ann") },
				func(db *gorm.DB) *gorm.DB { return db.Where(&Customer{Name: "ann"}) }},
			{"Assign's associations, miss", false, func() Customer { return Customer{} },
				func(db *gorm.DB) *gorm.DB {
					return db.Where(&Customer{Name: "ann"}).Assign(Customer{Age: 44, Wallet: &Wallet{Number: "assigned"}, Orders: []Order{{Item: "assigned"}}})
				}},
			{"Assign's associations, hit: none saved", true, func() Customer { return Customer{} },
				func(db *gorm.DB) *gorm.DB {
					return db.Where(&Customer{Name: "ann"}).Assign(Customer{Age: 44, Wallet: &Wallet{Number: "assigned"}, Orders: []Order{{Item: "assigned"}}})
				}},
			{"dest's associations, hit: none saved", true, func() Customer { return newCustomer("ann") },
				func(db *gorm.DB) *gorm.DB { return db.Where(&Customer{Name: "ann"}) }},
			{"Omit(Orders)", false, func() Customer { return newCustomer("ann") },
				func(db *gorm.DB) *gorm.DB { return db.Omit("Orders").Where(&Customer{Name: "ann"}) }},
			{"dest's associations and Assign, hit: Updates saves them", true, func() Customer { return newCustomer("ann") },
				func(db *gorm.DB) *gorm.DB { return db.Where(&Customer{Name: "ann"}).Assign(map[string]any{"age": 44}) }},
			{"Assign names a belongs-to association, hit", true, func() Customer { return Customer{} },
				func(db *gorm.DB) *gorm.DB {
					return db.Where(&Customer{Name: "ann"}).Assign(map[string]any{"Company": &Company{Name: "assigned co"}})
				}},
			{"Assign names a has-one association, hit", true, func() Customer { return Customer{} },
				func(db *gorm.DB) *gorm.DB {
					return db.Where(&Customer{Name: "ann"}).Assign(map[string]any{"Wallet": &Wallet{Number: "assigned"}})
				}},
			{"Assign names a has-one association, miss", false, func() Customer { return Customer{} },
				func(db *gorm.DB) *gorm.DB {
					return db.Where(&Customer{Name: "ann"}).Assign(map[string]any{"Wallet": &Wallet{Number: "assigned"}})
				}},
		}
		run := func(t *testing.T, seed bool, fn func() error) customerWorld {
			e.reset(t, customerTables...)
			if seed {
				require.NoError(t, e.other.Create(&Customer{Name: "ann", Age: 1}).Error)
			}
			require.NoError(t, fn())
			return e.customerWorld(t)
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var gormDest Customer
				want := run(t, c.seed, func() error {
					gormDest = c.dest()
					return c.chain(e.db).FirstOrCreate(&gormDest).Error
				})
				for _, o := range ops {
					for _, inTx := range []bool{false, true} {
						var dest Customer
						got := run(t, c.seed, func() error {
							dest = c.dest()
							if !inTx {
								_, err := o.fn(c.chain(e.db), &dest)
								return err
							}
							return e.db.Transaction(func(tx *gorm.DB) error {
								_, err := o.fn(c.chain(tx), &dest)
								return err
							})
						})
						assert.Equal(t, want.linked(), got.linked(), "%s in a transaction: %v: the tables", o.name, inTx)
						assert.Equal(t, gormDest.ID, dest.ID, "%s: dest", o.name)
						assert.Equal(t, gormDest.Age, dest.Age, "%s: dest", o.name)
					}
				}
			})
		}
	})
}

// A call that does not create the row leaves none of its associations
// behind: CreateOrFind's skipped INSERT, and FindOrCreate's INSERT that lost
// the race, roll back the belongs-to row saved before them.
func TestAssociationsNotLeftBehind(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, o := range ops {
			for _, mode := range []string{"bare", "SkipDefaultTransaction", "in a transaction"} {
				t.Run(o.name+"/"+mode, func(t *testing.T) {
					e.reset(t, customerTables...)
					winner := Customer{Name: "ann", Age: 7}
					// The winner commits between the caller's read and its
					// INSERT (CreateOrFind: before its INSERT). On SQLite the
					// INSERT's transaction holds the database's write lock
					// from its start: there the winner comes first.
					ctx := withInject(context.Background(), func() { require.NoError(t, e.other.Create(&winner).Error) })
					if e.name == "sqlite" {
						require.NoError(t, e.other.Create(&winner).Error)
						ctx = context.Background()
					}
					dest := newCustomer("ann")
					var created bool
					call := func(db *gorm.DB) (err error) {
						created, err = o.fn(db.WithContext(ctx).Where(&Customer{Name: "ann"}), &dest)
						return err
					}
					switch mode {
					case "in a transaction":
						require.NoError(t, e.db.Transaction(call))
					case "SkipDefaultTransaction":
						require.NoError(t, call(e.db.Session(&gorm.Session{SkipDefaultTransaction: true})))
					default:
						require.NoError(t, call(e.db))
					}
					assert.False(t, created)
					assert.Equal(t, winner.ID, dest.ID)
					assert.Equal(t, 7, dest.Age)
					w := e.customerWorld(t)
					assert.Len(t, w.Customers, 1)
					assert.Empty(t, w.Companies, "the belongs-to row saved before the INSERT is rolled back")
					assert.Empty(t, w.Wallets)
					assert.Empty(t, w.Orders)
				})
			}
		}
		t.Run("batches refuse rows with associations", func(t *testing.T) {
			for _, o := range batchOps {
				rows := []Customer{newCustomer("b1")}
				_, err := o.fn(e.db, &rows, "name")
				require.ErrorIs(t, err, safefind.ErrInvalidAttributes, o.name)
			}
		})
	})
}

// Shop's badge has a unique code of its own.
type Shop struct {
	ID    uint
	Name  string `gorm:"size:64;uniqueIndex"`
	Badge *Badge
}

// Badge is a shop's has-one association.
type Badge struct {
	ID     uint
	ShopID uint
	Code   string `gorm:"size:32;uniqueIndex"`
}

// A unique violation in an association's table is not the lookup's
// conflict: it is returned at once, as FirstOrCreate returns it, and
// nothing of the row is left. (MySQL/MariaDB have none: GORM saves a has-one
// with ON DUPLICATE KEY UPDATE, there and with FirstOrCreate alike.)
func TestAssociationDuplicateIsAnError(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		run := func(t *testing.T, inTx bool, fn func(tx *gorm.DB) error) (error, int64) {
			e.reset(t, &Shop{}, &Badge{})
			require.NoError(t, e.other.Create(&Shop{Name: "first", Badge: &Badge{Code: "taken"}}).Error)
			var err error
			if inTx {
				err = e.db.Transaction(fn)
			} else {
				err = fn(e.db)
			}
			return err, e.count(t, &Shop{})
		}
		for _, inTx := range []bool{false, true} {
			gormErr, gormShops := run(t, inTx, func(tx *gorm.DB) error {
				return tx.Where(&Shop{Name: "second"}).FirstOrCreate(&Shop{Badge: &Badge{Code: "taken"}}).Error
			})
			for _, o := range ops {
				t.Run(fmt.Sprintf("%s/tx=%v", o.name, inTx), func(t *testing.T) {
					before := e.plugin.Stats()
					err, shops := run(t, inTx, func(tx *gorm.DB) error {
						_, err := o.fn(tx.Where(&Shop{Name: "second"}), &Shop{Badge: &Badge{Code: "taken"}})
						return err
					})
					assert.Equal(t, gormErr != nil, err != nil, "as FirstOrCreate: %v", gormErr)
					assert.NotErrorIs(t, err, safefind.ErrConflictNotFound)
					assert.Zero(t, e.plugin.Stats().Retries-before.Retries, "not retried")
					assert.Equal(t, gormShops, shops)
				})
			}
			if e.name != "mysql" {
				assert.Error(t, gormErr, "the duplicate badge fails the save")
			}
		}
	})
}
