package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

const (
	// serverName is what the seeded associations are signed under and what
	// the server is configured with.
	serverName = "sigil-load.test"
	// loadPepper is the lookup pepper written before the server starts.
	loadPepper = "sigilLoadPepper2024abcdefXYZ"
	// loadUser owns the v2 access token.
	loadUser = "@loadtester:load.test"
	// seedChunk is how many associations one signing job produces.
	seedChunk = 5000
)

// Binding i is user<i>@load.test → @user<i>:load.test; addresses i >= N are
// never bound.
func email(i int) string { return "user" + strconv.Itoa(i) + "@load.test" }
func mxid(i int) string  { return "@user" + strconv.Itoa(i) + ":load.test" }

// fixture is what the load generator needs to know about a seeded database.
type fixture struct {
	N        int
	KeyPath  string
	Key      signing.Key
	Pepper   string
	Token    string // v2 access token of loadUser
	SeedTime time.Duration
	// AnalyzeTime is how long ANALYZE took (PostgreSQL with -analyze).
	AnalyzeTime time.Duration
}

func sqlitePath(dir string) string { return filepath.Join(dir, "sigil.db") }

// seedDatabase creates the signing key in dir, then opens (and migrates)
// the database, stores the pepper, one v2 account and n bindings. With
// analyze, PostgreSQL then gathers planner statistics, as autovacuum would
// shortly after a bulk load; SQLite has no automatic ANALYZE and gets none.
func seedDatabase(ctx context.Context, dsn, dir string, n int, analyze bool, progress io.Writer) (fixture, error) {
	fx := fixture{N: n, KeyPath: filepath.Join(dir, "signing.key"), Pepper: loadPepper}
	var err error
	if fx.Key, err = signing.LoadOrCreateKeyFile(fx.KeyPath); err != nil {
		return fx, err
	}
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	fx.Token = hex.EncodeToString(tok)

	start := time.Now()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return fx, err
	}
	defer st.Close()
	if err := st.SetSetting(ctx, identity.PepperKey, fx.Pepper); err != nil {
		return fx, err
	}
	if err := st.CreateAccount(ctx, loadUser, identity.AccessTokenHash(fx.Token), time.Now()); err != nil {
		return fx, err
	}
	if err := seedAssociations(ctx, st, fx.Key, fx.Pepper, n, progress); err != nil {
		return fx, err
	}
	fx.SeedTime = time.Since(start)
	if analyze && st.Dialect() == store.DialectPostgres {
		start = time.Now()
		if err := st.DB().WithContext(ctx).Exec("ANALYZE").Error; err != nil {
			return fx, fmt.Errorf("analyze: %w", err)
		}
		fx.AnalyzeTime = time.Since(start)
	}
	return fx, nil
}

// seedAssociations signs n associations on every core and inserts them
// through store.InsertAssociations while the next chunks are being signed.
// PostgreSQL takes two inserters; SQLite has a single writer anyway.
func seedAssociations(ctx context.Context, st *store.Store, key signing.Key, pepper string, n int, progress io.Writer) error {
	g, ctx := errgroup.WithContext(ctx)
	jobs := make(chan int)
	signers := runtime.GOMAXPROCS(0)
	chunks := make(chan []store.Association, 2*signers)
	g.Go(func() error {
		defer close(jobs)
		for start := 0; start < n; start += seedChunk {
			select {
			case jobs <- start:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	now := time.Now()
	var sg errgroup.Group
	for range signers {
		sg.Go(func() error {
			for start := range jobs {
				batch, err := signChunk(key, pepper, now, start, min(start+seedChunk, n))
				if err != nil {
					return err
				}
				select {
				case chunks <- batch:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}
	g.Go(func() error { defer close(chunks); return sg.Wait() })
	inserters := 1
	if st.Dialect() == store.DialectPostgres {
		inserters = 2
	}
	var done atomic.Int64
	step := int64(max(n/10, seedChunk))
	for range inserters {
		g.Go(func() error {
			for batch := range chunks {
				if err := st.InsertAssociations(ctx, batch); err != nil {
					return err
				}
				d := done.Add(int64(len(batch)))
				if progress != nil && n >= 100000 && d/step != (d-int64(len(batch)))/step {
					fmt.Fprintf(progress, "  %d/%d bindings\n", d, n)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// signChunk builds associations [from, to) exactly as a bind stores them.
func signChunk(key signing.Key, pepper string, now time.Time, from, to int) ([]store.Association, error) {
	out := make([]store.Association, 0, to-from)
	for i := from; i < to; i++ {
		a, err := identity.SignAssociation(key, serverName, "email", email(i), mxid(i), pepper, now)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// createPostgresDB creates a fresh database next to the one adminURL names
// and returns its URL and a function that drops it.
func createPostgresDB(ctx context.Context, adminURL string) (string, func(), error) {
	admin, err := gorm.Open(postgres.New(postgres.Config{DSN: adminURL}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return "", nil, fmt.Errorf("postgres %s: %w", adminURL, err)
	}
	sqlDB, err := admin.DB()
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sigil_load_" + hex.EncodeToString(b)
	if err := admin.WithContext(ctx).Exec("CREATE DATABASE " + name).Error; err != nil {
		sqlDB.Close()
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	dsn, err := replaceDBName(adminURL, name)
	if err != nil {
		sqlDB.Close()
		return "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := admin.WithContext(ctx).Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)").Error; err != nil {
			fmt.Printf("warning: drop database %s: %v\n", name, err)
		}
		sqlDB.Close()
	}
	return dsn, drop, nil
}

// replaceDBName returns url u with its database (path) set to name.
func replaceDBName(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("postgres url: %w", err)
	}
	p.Path = "/" + name
	return p.String(), nil
}
