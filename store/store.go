// Package store is Sigil's persistence layer: GORM models, versioned schema
// migrations and the queries the identity server needs. It runs unchanged on
// SQLite (mattn/go-sqlite3) and PostgreSQL (pgx).
//
// The package knows nothing about HTTP or Matrix types: 3PIDs, MXIDs, tokens
// and signed JSON are plain strings and bytes, canonicalised by the caller.
//
// All times are stored in UTC, truncated to microseconds (PostgreSQL's
// timestamp precision) so that a value read back equals the value written on
// both dialects.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialect names returned by Store.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

var (
	// ErrNotFound is returned when a looked-up row does not exist (or is
	// outside its validity window).
	ErrNotFound = errors.New("store: not found")
	// ErrDuplicate is returned when an insert violates a unique constraint
	// (e.g. an invite token that already exists).
	ErrDuplicate = errors.New("store: duplicate")
)

// Store is a handle on the database. It is safe for concurrent use.
type Store struct {
	// db is the general pool used for reads (and returned by DB()).
	db *gorm.DB
	// wdb is used for every write. On SQLite it is a separate pool holding a
	// single connection, so writers queue in Go instead of spinning on
	// SQLITE_BUSY; on PostgreSQL it is the same pool as db.
	wdb     *gorm.DB
	dialect string
	// ix is the in-memory lookup index (index.go); nil for a Store that
	// was opened without migrating.
	ix *lookupIndex
	// log receives the store's own messages (failed statements, index
	// loads); the process's one logger, handed over with WithLogger.
	log *slog.Logger
}

// Option configures Open.
type Option func(*options)

type options struct {
	log     *slog.Logger
	noIndex bool
}

// WithLogger sends the store's messages to log (default: discarded if nil
// is given, slog.Default() if the option is absent).
func WithLogger(log *slog.Logger) Option {
	return func(o *options) { o.log = log }
}

// WithoutLookupIndex opens the store without loading the in-memory lookup
// index: for the operator's commands (sigil bindings, rotate-pepper, ...),
// which run once and would otherwise read every binding first (about 2 s
// and 100 MB at 1,000,000 bindings). Lookups then ask the database, and
// writes still tell running servers about the associations they change
// (the SQLite write counter, PostgreSQL NOTIFY), so their indexes stay
// current.
func WithoutLookupIndex() Option {
	return func(o *options) { o.noIndex = true }
}

func openOptions(opts []Option) options {
	o := options{log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return o
}

// sqliteParams are appended to every SQLite DSN. _txlock=immediate makes every
// transaction BEGIN IMMEDIATE, so a read-then-write transaction takes the
// write lock up front (waiting up to busy_timeout) instead of failing with
// SQLITE_BUSY when it tries to upgrade.
var sqliteParams = [][2]string{
	{"_journal_mode", "WAL"},
	{"_busy_timeout", "5000"},
	{"_foreign_keys", "on"},
	{"_synchronous", "NORMAL"},
	{"_txlock", "immediate"},
}

// Open connects to the database named by dsn and applies all pending
// migrations.
//
// "postgres://..." and "postgresql://..." select PostgreSQL; anything else is
// a SQLite file path, optionally prefixed "sqlite:" (or "sqlite://"). The
// parent directory of a SQLite file is created with mode 0700 and a new
// database file with mode 0600.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := openOptions(opts)
	s, err := open(ctx, dsn, o.log)
	if err != nil {
		return nil, err
	}
	if err := migrateTo(s.wdb.WithContext(ctx), ""); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	if err := s.startIndex(ctx, dsn, !o.noIndex); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// open connects without migrating.
func open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	var s *Store
	var err error
	if isPostgresDSN(dsn) {
		s, err = openPostgres(ctx, dsn, log)
	} else {
		s, err = openSQLite(ctx, dsn, log)
	}
	if err != nil {
		return nil, err
	}
	s.log = log
	return s, nil
}

func isPostgresDSN(dsn string) bool {
	l := strings.ToLower(dsn)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

func gormConfig(log *slog.Logger) *gorm.Config {
	return &gorm.Config{
		Logger:                 slogLogger{log},
		NowFunc:                func() time.Time { return utc(time.Now()) },
		SkipDefaultTransaction: true, // single statements are atomic; we open transactions explicitly
		TranslateError:         true,
	}
}

// postgresPoolSize bounds the connections to PostgreSQL per instance.
const postgresPoolSize = 20

func openPostgres(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: dsn}), gormConfig(log))
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	// As many idle connections as open ones: with fewer, every burst of
	// more concurrent queries than idle slots closed the surplus and
	// opened it again moments later, a new PostgreSQL server process each
	// time (TestPoolKeepsItsConnectionsUnderLoad). Idle ones still go
	// after ConnMaxIdleTime.
	sqlDB.SetMaxOpenConns(postgresPoolSize)
	sqlDB.SetMaxIdleConns(postgresPoolSize)
	sqlDB.SetConnMaxLifetime(30 * time.Minute)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	return &Store{db: db, wdb: db, dialect: DialectPostgres}, nil
}

// ErrNoSQLite: this binary was built without cgo and cannot open SQLite.
var ErrNoSQLite = errors.New("this sigil was built without cgo (CGO_ENABLED=0) and cannot open SQLite: " +
	"set database (SIGIL_DATABASE) to a postgres:// URL, or use a build with cgo (make build, make static, a release archive)")

func openSQLite(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	if !sqliteAvailable {
		return nil, fmt.Errorf("store: open sqlite: %w", ErrNoSQLite)
	}
	path := dsn
	if strings.HasPrefix(path, "sqlite:") {
		path = strings.TrimPrefix(path, "sqlite:")
		path = strings.TrimPrefix(path, "//")
	}
	if path == "" {
		return nil, errors.New("store: open sqlite: empty path")
	}
	full, file, memory := sqliteDSN(path)
	if !memory {
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return nil, fmt.Errorf("store: open sqlite: create directory: %w", err)
		}
		// Pre-create the file so it is not world-readable; SQLite gives the
		// -wal and -shm files the same permissions.
		f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		_ = f.Close()
	}

	rdb, err := openSQLitePool(ctx, full, log)
	if err != nil {
		return nil, err
	}
	if memory {
		// Every connection to ":memory:" is a distinct database: use exactly one.
		sqlDB, _ := rdb.DB()
		sqlDB.SetMaxOpenConns(1)
		return &Store{db: rdb, wdb: rdb, dialect: DialectSQLite}, nil
	}
	readers := max(4, 2*runtime.GOMAXPROCS(0))
	sqlDB, _ := rdb.DB()
	sqlDB.SetMaxOpenConns(readers)
	sqlDB.SetMaxIdleConns(readers)
	sqlDB.SetConnMaxIdleTime(10 * time.Minute)

	wdb, err := openSQLitePool(ctx, full, log)
	if err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	wsql, _ := wdb.DB()
	wsql.SetMaxOpenConns(1)
	wsql.SetMaxIdleConns(1)
	return &Store{db: rdb, wdb: wdb, dialect: DialectSQLite}, nil
}

func openSQLitePool(ctx context.Context, dsn string, log *slog.Logger) (*gorm.DB, error) {
	db, err := gorm.Open(sqlite.Open(dsn), gormConfig(log))
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	return db, nil
}

// sqliteDSN adds the connection parameters to a SQLite path (which may
// already carry a "?query"). It returns the full DSN, the file-system path and
// whether the database is in-memory.
func sqliteDSN(path string) (dsn, file string, memory bool) {
	file, query, _ := strings.Cut(path, "?")
	existing, _ := url.ParseQuery(query)
	var b strings.Builder
	b.WriteString(path)
	sep := "?"
	if query != "" || strings.HasSuffix(path, "?") {
		sep = "&"
	}
	for _, p := range sqliteParams {
		if existing.Has(p[0]) {
			continue
		}
		b.WriteString(sep)
		b.WriteString(p[0])
		b.WriteByte('=')
		b.WriteString(p[1])
		sep = "&"
	}
	memory = file == ":memory:" || existing.Get("mode") == "memory"
	file = strings.TrimPrefix(file, "file:")
	return b.String(), file, memory
}

// Close closes the database connections.
func (s *Store) Close() error {
	s.stopIndex()
	var errs []error
	if sqlDB, err := s.db.DB(); err == nil {
		errs = append(errs, sqlDB.Close())
	}
	if s.wdb != s.db {
		if sqlDB, err := s.wdb.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// DB returns the underlying GORM handle (the read pool on SQLite; writes
// through it are still safe thanks to busy_timeout and immediate
// transactions).
func (s *Store) DB() *gorm.DB { return s.db }

// Dialect returns "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// utc normalises a time for storage.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// wrap maps GORM errors onto the package's sentinels and adds context.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		err = ErrNotFound
	case errors.Is(err, gorm.ErrDuplicatedKey):
		err = ErrDuplicate
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// slogLogger is a GORM logger that is silent except for failed statements,
// which go to the store's logger at error level. Statement parameters are
// never logged: they include secrets such as client secrets and tokens.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) LogMode(logger.LogLevel) logger.Interface { return l }
func (slogLogger) Info(context.Context, string, ...any)       {}
func (slogLogger) Warn(context.Context, string, ...any)       {}

func (l slogLogger) Error(ctx context.Context, msg string, args ...any) {
	l.log.ErrorContext(ctx, "store: "+fmt.Sprintf(msg, args...))
}

func (l slogLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if err == nil ||
		errors.Is(err, gorm.ErrRecordNotFound) ||
		errors.Is(err, gorm.ErrDuplicatedKey) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return
	}
	sql, rows := fc()
	l.log.ErrorContext(ctx, "store: query failed", "err", err, "sql", sql, "rows", rows, "elapsed", time.Since(begin))
}

// ParamsFilter drops statement parameters from logged SQL.
func (slogLogger) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

// ErrNoDatabaseYet is returned by Ping for a SQLite file that does not
// exist yet (it is created at first start).
var ErrNoDatabaseYet = errors.New("store: the SQLite file does not exist yet")

// Ping connects to the database named by dsn without migrating it or
// creating anything (sigil check). A SQLite file that does not exist is
// ErrNoDatabaseYet when its directory could hold it.
func Ping(ctx context.Context, dsn string) error {
	if !isPostgresDSN(dsn) {
		_, file, memory := sqliteDSN(strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//"))
		if _, err := os.Stat(file); !memory && errors.Is(err, os.ErrNotExist) {
			return ErrNoDatabaseYet
		} else if !memory && err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	s, err := open(ctx, dsn, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	return s.Close()
}
