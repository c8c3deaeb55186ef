//go:build !cgo

package store

// A build without cgo (CGO_ENABLED=0) cannot link SQLite: mattn/go-sqlite3
// is a C library's binding, and its cgo-less stub fails only when a query
// runs. Such a build serves PostgreSQL only and says so when it opens a
// SQLite database (ErrNoSQLite), before anything else happens. The
// embedded SQLite default needs a cgo build (`make build`, `make static`,
// the release archives); a pure-Go SQLite driver would give a second
// database engine to test and support, for a build most operators never
// need.
const sqliteAvailable = false

func sqliteBusy(error) bool { return false }
