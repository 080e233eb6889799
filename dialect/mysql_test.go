package dialect

import "testing"

// The shape foundRowsOff reads: gorm.io/driver/mysql's Dialector
// embeds *Config, whose DSNConfig is go-sql-driver's *mysql.Config.
type (
	fakeDSN       struct{ ClientFoundRows bool }
	Config        struct{ DSNConfig *fakeDSN } // named as the driver's
	fakeDialector struct{ *Config }
)

func TestMySQLUpsertAffectedRows(t *testing.T) {
	cases := []struct {
		name string
		d    any
		want bool
	}{
		{"a DSN without clientFoundRows", &fakeDialector{&Config{&fakeDSN{}}}, true},
		{"clientFoundRows", &fakeDialector{&Config{&fakeDSN{ClientFoundRows: true}}}, false},
		{"no parsed DSN (a connection given)", &fakeDialector{&Config{}}, false},
		{"no config", &fakeDialector{}, false},
		{"another shape", struct{ Config int }{}, false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := foundRowsOff(c.d); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
