//go:build cgo

package store

import (
	"errors"

	"github.com/mattn/go-sqlite3"
)

// sqliteAvailable: this build links SQLite (mattn/go-sqlite3 needs cgo).
const sqliteAvailable = true

// sqliteBusy reports whether err is SQLite's "busy" or "locked": another
// connection held the database past the busy timeout, so trying again later
// may work.
func sqliteBusy(err error) bool {
	var sqliteErr sqlite3.Error
	if !errors.As(err, &sqliteErr) {
		return false
	}
	return sqliteErr.Code == sqlite3.ErrBusy || sqliteErr.Code == sqlite3.ErrLocked
}
