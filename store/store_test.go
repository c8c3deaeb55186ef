package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

const pgEnv = "SIGIL_TEST_POSTGRES_URL"

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// backends lists the databases the suite runs on: SQLite always, PostgreSQL
// when SIGIL_TEST_POSTGRES_URL is set.
func backends() []string {
	if os.Getenv(pgEnv) != "" {
		return []string{DialectSQLite, DialectPostgres}
	}
	return []string{DialectSQLite}
}

// freshDSN returns a DSN for an empty database: a SQLite file in a new
// temporary directory, or a new PostgreSQL schema dropped at cleanup.
func freshDSN(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case DialectSQLite:
		return filepath.Join(t.TempDir(), "nested", "dir", "sigil.db")
	case DialectPostgres:
		return pgSchemaDSN(t)
	}
	t.Fatalf("unknown backend %q", backend)
	return ""
}

func pgSchemaDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(pgEnv)
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("connect to %s: %v", pgEnv, err)
	}
	schema := "sigil_test_" + randHex(6)
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error; err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		if sqlDB, err := admin.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", pgEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func openT(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// forEach runs fn as a subtest per backend, each with a fresh, migrated store.
func forEach(t *testing.T, fn func(t *testing.T, s *Store)) {
	for _, b := range backends() {
		t.Run(b, func(t *testing.T) {
			s := openT(t, freshDSN(t, b))
			if s.Dialect() != b {
				t.Fatalf("Dialect() = %q, want %q", s.Dialect(), b)
			}
			fn(t, s)
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------- Open

func TestSQLiteDSN(t *testing.T) {
	const all = "_journal_mode=WAL&_busy_timeout=5000&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate"
	tests := []struct {
		in, dsn, file string
		memory        bool
	}{
		{"/var/lib/sigil/db.sqlite", "/var/lib/sigil/db.sqlite?" + all, "/var/lib/sigil/db.sqlite", false},
		{"rel.db", "rel.db?" + all, "rel.db", false},
		{"x.db?_busy_timeout=100", "x.db?_busy_timeout=100&_journal_mode=WAL&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate", "x.db", false},
		{"file:x.db?cache=shared", "file:x.db?cache=shared&" + all, "x.db", false},
		{":memory:", ":memory:?" + all, ":memory:", true},
		{"file:m?mode=memory", "file:m?mode=memory&" + all, "m", true},
	}
	for _, tt := range tests {
		dsn, file, memory := sqliteDSN(tt.in)
		if dsn != tt.dsn || file != tt.file || memory != tt.memory {
			t.Errorf("sqliteDSN(%q) = %q, %q, %v; want %q, %q, %v", tt.in, dsn, file, memory, tt.dsn, tt.file, tt.memory)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "sigil.db")
	for _, dsn := range []string{"sqlite:" + path, path} { // create, then reopen
		s := openT(t, dsn)
		if s.Dialect() != DialectSQLite {
			t.Fatalf("Dialect() = %q", s.Dialect())
		}
		for name, db := range map[string]*gorm.DB{"reader": s.db, "writer": s.wdb} {
			pragmas := []struct {
				name string
				want string
			}{
				{"journal_mode", "wal"},
				{"busy_timeout", "5000"},
				{"foreign_keys", "1"},
				{"synchronous", "1"}, // NORMAL
			}
			for _, p := range pragmas {
				var got string
				must(t, db.Raw("PRAGMA "+p.name).Scan(&got).Error)
				if got != p.want {
					t.Errorf("%s: PRAGMA %s = %q, want %q", name, p.name, got, p.want)
				}
			}
		}
		must(t, s.Close())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	mem := openT(t, ":memory:")
	must(t, mem.SetSetting(context.Background(), "k", "v"))
	if v, err := mem.Setting(context.Background(), "k"); err != nil || v != "v" {
		t.Errorf("in-memory Setting = %q, %v", v, err)
	}
}

func TestOpenPostgresDialect(t *testing.T) {
	if os.Getenv(pgEnv) == "" {
		t.Skip(pgEnv + " not set")
	}
	dsn := freshDSN(t, DialectPostgres)
	for _, d := range []string{dsn, "postgresql" + dsn[len("postgres"):]} {
		s := openT(t, d)
		if s.Dialect() != DialectPostgres {
			t.Errorf("Dialect(%q) = %q", d, s.Dialect())
		}
	}
}

// ---------------------------------------------------------------- migrations

func TestMigrationUpgradeInPlace(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b, func(t *testing.T) {
			dsn := freshDSN(t, b)

			old, err := open(ctx, dsn, slog.Default())
			must(t, err)
			must(t, migrateTo(old.wdb, "0001_initial"))
			m := old.wdb.Migrator()
			if !m.HasTable("sessions") || !m.HasTable("associations") {
				t.Fatal("0001_initial did not create sessions/associations")
			}
			if m.HasTable("invites") || m.HasTable("settings") {
				t.Fatal("later migrations ran early")
			}
			// A row written by the old schema, in plain SQL.
			must(t, old.wdb.Exec(`INSERT INTO associations
				(medium, address, mxid, ts, not_before, not_after, signed, lookup_hash, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				"email", "old@example.org", "@old:example.org", 1, 0, 1<<62, []byte(`{"old":true}`), "oldhash", t0).Error)
			must(t, old.Close())

			s := openT(t, dsn)
			a, err := s.Association(ctx, "email", "old@example.org", 1000)
			if err != nil || a.MXID != "@old:example.org" || string(a.Signed) != `{"old":true}` {
				t.Fatalf("old row after upgrade = %+v, %v", a, err)
			}
			for _, tbl := range []string{"sessions", "associations", "invites", "settings"} {
				if !s.wdb.Migrator().HasTable(tbl) {
					t.Errorf("table %s missing after upgrade", tbl)
				}
			}
			must(t, s.CreateInvite(ctx, Invite{Token: "tok", Medium: "email", Address: "old@example.org", EphemeralPublicKey: "k"}))
			must(t, s.SetSetting(ctx, "pepper", "p"))
			var ids []string
			must(t, s.db.Table(migrationsTable).Order("id").Pluck("id", &ids).Error)
			var want []string
			for _, m := range migrations() {
				want = append(want, m.ID)
			}
			if !slices.Equal(ids, want) {
				t.Errorf("applied migrations = %v, want %v", ids, want)
			}
			must(t, s.Close())

			// Reopening is a no-op; a database from a newer binary is refused.
			s2 := openT(t, dsn)
			must(t, s2.db.Table(migrationsTable).Create(map[string]any{"id": "9999_future"}).Error)
			must(t, s2.Close())
			if s3, err := Open(ctx, dsn); err == nil {
				_ = s3.Close()
				t.Error("Open accepted a database with an unknown migration")
			}
		})
	}
}

// ---------------------------------------------------------------- sessions

// expiredAfter is the expiry rule the identity service passes: an
// unvalidated session older than life is replaced. Stored times have
// microseconds, so the boundary is compared at that precision.
func expiredAfter(now time.Time, life time.Duration) func(Session) bool {
	now = now.Truncate(time.Microsecond)
	return func(cur Session) bool { return cur.ValidatedAt == nil && now.Sub(cur.ModifiedAt) > life }
}

func TestRequestSession(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const life = time.Hour
		req := func(secret string, attempt int, next, sid string, now time.Time) SessionRequest {
			return SessionRequest{
				Medium: "email", Address: "a@example.org", ClientSecret: secret,
				SendAttempt: attempt, NextLink: next,
				NewSID: sid, NewToken: "tok-" + sid, Now: now, Replace: expiredAfter(now, life),
			}
		}
		steps := []struct {
			name      string
			req       SessionRequest
			validate  bool // mark the resulting session validated (at req.Now)
			wantSID   string
			wantTok   string
			wantSend  bool
			wantTry   int
			wantNext  string
			wantCreat time.Time
		}{
			{"first request creates", req("s1", 1, "https://n/1", "sidA", t0), false, "sidA", "tok-sidA", true, 1, "https://n/1", t0},
			{"same attempt: same sid, no send", req("s1", 1, "https://n/x", "sidB", t0.Add(time.Minute)), false, "sidA", "tok-sidA", false, 1, "https://n/1", t0},
			{"lower attempt: no send", req("s1", 0, "", "sidC", t0.Add(2*time.Minute)), false, "sidA", "tok-sidA", false, 1, "https://n/1", t0},
			{"higher attempt: send, same sid, next link updated", req("s1", 2, "https://n/2", "sidD", t0.Add(3*time.Minute)), false, "sidA", "tok-sidA", true, 2, "https://n/2", t0},
			{"higher attempt, empty next link kept", req("s1", 5, "", "sidE", t0.Add(4*time.Minute)), false, "sidA", "tok-sidA", true, 5, "https://n/2", t0},
			{"other client secret: new session", req("s2", 1, "", "sidF", t0.Add(5*time.Minute)), false, "sidF", "tok-sidF", true, 1, "", t0.Add(5 * time.Minute)},
			{"not yet expired (exactly lifetime)", req("s1", 5, "", "sidG", t0.Add(life)), false, "sidA", "tok-sidA", false, 5, "https://n/2", t0},
			{"expired: new sid and token", req("s1", 1, "https://n/3", "sidH", t0.Add(life+time.Second)), false, "sidH", "tok-sidH", true, 1, "https://n/3", t0.Add(life + time.Second)},
			{"validated", req("s1", 1, "", "sidI", t0.Add(life+2*time.Second)), true, "sidH", "tok-sidH", false, 1, "https://n/3", t0.Add(life + time.Second)},
			{"validated sessions do not expire here", req("s1", 1, "", "sidJ", t0.Add(10*life)), false, "sidH", "tok-sidH", false, 1, "https://n/3", t0.Add(life + time.Second)},
		}
		for _, st := range steps {
			sess, send, err := s.RequestSession(ctx, st.req)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if sess.SID != st.wantSID || sess.Token != st.wantTok || send != st.wantSend ||
				sess.SendAttempt != st.wantTry || sess.NextLink != st.wantNext ||
				!sess.CreatedAt.Equal(st.wantCreat.Truncate(time.Microsecond)) {
				t.Fatalf("%s: got sid=%s tok=%s send=%v try=%d next=%q created=%v",
					st.name, sess.SID, sess.Token, send, sess.SendAttempt, sess.NextLink, sess.CreatedAt)
			}
			got, err := s.SessionBySID(ctx, sess.SID)
			if err != nil {
				t.Fatalf("%s: SessionBySID: %v", st.name, err)
			}
			if got != sess && !sessionsEqual(got, sess) {
				t.Fatalf("%s: stored %+v, returned %+v", st.name, got, sess)
			}
			if st.validate {
				must(t, s.MarkSessionValidated(ctx, sess.SID, st.req.Now))
			}
		}
		// The expired session's old sid is gone.
		if _, err := s.SessionBySID(ctx, "sidA"); !errors.Is(err, ErrNotFound) {
			t.Errorf("old sid after expiry: err = %v, want ErrNotFound", err)
		}
		var n int64
		must(t, s.db.Model(&Session{}).Count(&n).Error)
		if n != 2 {
			t.Errorf("%d session rows, want 2", n)
		}
	})
}

func sessionsEqual(a, b Session) bool {
	ptrEq := func(x, y *time.Time) bool {
		return (x == nil) == (y == nil) && (x == nil || x.Equal(*y))
	}
	return a.ID == b.ID && a.SID == b.SID && a.Medium == b.Medium && a.Address == b.Address &&
		a.ClientSecret == b.ClientSecret && a.Token == b.Token && a.SendAttempt == b.SendAttempt &&
		a.NextLink == b.NextLink && a.CreatedAt.Equal(b.CreatedAt) && a.ModifiedAt.Equal(b.ModifiedAt) &&
		ptrEq(a.ValidatedAt, b.ValidatedAt)
}

func concurrentRequests(t *testing.T, stores []*Store, n int, req SessionRequest) {
	t.Helper()
	type result struct {
		sid  string
		send bool
		err  error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			r := req
			r.NewSID = fmt.Sprintf("sid-%s-%d", req.ClientSecret, i)
			r.NewToken = fmt.Sprintf("tok-%d", i)
			<-start
			sess, send, err := stores[i%len(stores)].RequestSession(context.Background(), r)
			results[i] = result{sess.SID, send, err}
		})
	}
	close(start)
	wg.Wait()
	sends := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.sid != results[0].sid {
			t.Fatalf("request %d got sid %s, request 0 got %s", i, r.sid, results[0].sid)
		}
		if r.send {
			sends++
		}
	}
	if sends != 1 {
		t.Errorf("%d requests were told to send, want 1", sends)
	}
	var rows int64
	must(t, stores[0].db.Model(&Session{}).Where("client_secret = ?", req.ClientSecret).Count(&rows).Error)
	if rows != 1 {
		t.Errorf("%d rows, want 1", rows)
	}
}

func TestRequestSessionConcurrent(t *testing.T) {
	req := SessionRequest{Medium: "email", Address: "c@example.org", SendAttempt: 1, Now: t0, Replace: expiredAfter(t0, time.Hour)}
	forEach(t, func(t *testing.T, s *Store) {
		for round := range 5 {
			r := req
			r.ClientSecret = fmt.Sprintf("secret-%d", round)
			concurrentRequests(t, []*Store{s}, 8, r)
		}
	})
	// Two independent handles on one SQLite file, as two processes would be:
	// they serialise through busy_timeout and BEGIN IMMEDIATE.
	t.Run("sqlite-two-handles", func(t *testing.T) {
		dsn := freshDSN(t, DialectSQLite)
		a, b := openT(t, dsn), openT(t, dsn)
		for round := range 5 {
			r := req
			r.ClientSecret = fmt.Sprintf("secret-%d", round)
			concurrentRequests(t, []*Store{a, b}, 8, r)
		}
	})
}

func TestMarkSessionValidated(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		sess, _, err := s.RequestSession(ctx, SessionRequest{
			Medium: "msisdn", Address: "447700900000", ClientSecret: "cs", SendAttempt: 1,
			NewSID: "sid1", NewToken: "123456", Now: t0, Replace: expiredAfter(t0, time.Hour),
		})
		must(t, err)
		if sess.ValidatedAt != nil {
			t.Fatal("new session already validated")
		}
		v1 := t0.Add(time.Minute)
		must(t, s.MarkSessionValidated(ctx, "sid1", v1))
		got, err := s.SessionBySID(ctx, "sid1")
		must(t, err)
		want := v1.Truncate(time.Microsecond)
		if got.ValidatedAt == nil || !got.ValidatedAt.Equal(want) || !got.ModifiedAt.Equal(want) {
			t.Fatalf("after validation: validated=%v modified=%v", got.ValidatedAt, got.ModifiedAt)
		}
		if got.ValidatedAt.Location() != time.UTC || got.ModifiedAt.Location() != time.UTC || got.CreatedAt.Location() != time.UTC {
			t.Error("times not returned in UTC")
		}
		v2 := t0.Add(2 * time.Minute)
		must(t, s.MarkSessionValidated(ctx, "sid1", v2))
		got, err = s.SessionBySID(ctx, "sid1")
		must(t, err)
		if !got.ValidatedAt.Equal(want) || !got.ModifiedAt.Equal(v2.Truncate(time.Microsecond)) {
			t.Fatalf("after revalidation: validated=%v (want kept %v) modified=%v", got.ValidatedAt, want, got.ModifiedAt)
		}
		if err := s.MarkSessionValidated(ctx, "nope", v2); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown sid: err = %v, want ErrNotFound", err)
		}
		if _, err := s.SessionBySID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("SessionBySID unknown: err = %v, want ErrNotFound", err)
		}
	})
}

func TestDeleteSessionsOlderThan(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i := range 5 {
			_, _, err := s.RequestSession(ctx, SessionRequest{
				Medium: "email", Address: "d@example.org", ClientSecret: fmt.Sprint(i), SendAttempt: 1,
				NewSID: fmt.Sprint("sid", i), NewToken: "t", Now: t0.Add(time.Duration(i) * time.Hour),
			})
			must(t, err)
		}
		// Validating sid0 late makes it recent again.
		must(t, s.MarkSessionValidated(ctx, "sid0", t0.Add(10*time.Hour)))
		tests := []struct {
			cutoff time.Time
			want   int64
		}{
			{t0, 0},
			{t0.Add(2 * time.Hour), 1},             // sid1
			{t0.Add(4*time.Hour + time.Second), 3}, // sid2..sid4
			{t0.Add(4 * time.Hour), 0},
			{t0.Add(11 * time.Hour), 1}, // sid0
		}
		for _, tt := range tests {
			n, err := s.DeleteSessionsOlderThan(ctx, tt.cutoff)
			must(t, err)
			if n != tt.want {
				t.Errorf("DeleteSessionsOlderThan(%v) = %d, want %d", tt.cutoff, n, tt.want)
			}
		}
	})
}

// ---------------------------------------------------------------- associations

func assoc(medium, address, mxid string, nb, na int64) Association {
	return Association{
		Medium: medium, Address: address, MXID: mxid,
		TS: nb, NotBefore: nb, NotAfter: na,
		Signed:     []byte(fmt.Sprintf(`{"address":%q,"mxid":%q,"signatures":{}}`, address, mxid)),
		LookupHash: "h:" + medium + ":" + address,
	}
}

func TestAssociationValidityWindow(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		must(t, s.PutAssociation(ctx, assoc("email", "w@example.org", "@w:hs", 1000, 2000)))
		tests := []struct {
			now   int64
			found bool
		}{
			{999, false}, {1000, true}, {1500, true}, {2000, true}, {2001, false},
		}
		for _, tt := range tests {
			a, err := s.Association(ctx, "email", "w@example.org", tt.now)
			if tt.found != (err == nil) || (!tt.found && !errors.Is(err, ErrNotFound)) {
				t.Errorf("Association at %d: %+v, %v; want found=%v", tt.now, a, err, tt.found)
			}
			bulk, err := s.BulkAssociations(ctx, []ThreePID{{"email", "w@example.org"}}, tt.now)
			must(t, err)
			if _, ok := bulk[ThreePID{"email", "w@example.org"}]; ok != tt.found {
				t.Errorf("BulkAssociations at %d: found=%v, want %v", tt.now, ok, tt.found)
			}
			hashes, err := s.LookupHashes(ctx, []string{"h:email:w@example.org"}, tt.now)
			must(t, err)
			if _, ok := hashes["h:email:w@example.org"]; ok != tt.found {
				t.Errorf("LookupHashes at %d: found=%v, want %v", tt.now, ok, tt.found)
			}
		}
		if _, err := s.Association(ctx, "msisdn", "w@example.org", 1500); !errors.Is(err, ErrNotFound) {
			t.Errorf("other medium: %v, want ErrNotFound", err)
		}
	})
}

func TestPutAssociationUpsert(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := assoc("email", "u@example.org", "@one:hs", 10, 100)
		a.CreatedAt = t0
		must(t, s.PutAssociation(ctx, a))
		got, err := s.Association(ctx, "email", "u@example.org", 50)
		must(t, err)
		if got.MXID != "@one:hs" || !bytes.Equal(got.Signed, a.Signed) || got.LookupHash != a.LookupHash ||
			got.TS != 10 || !got.CreatedAt.Equal(t0.Truncate(time.Microsecond)) {
			t.Fatalf("got %+v", got)
		}

		b := Association{
			Medium: "email", Address: "u@example.org", MXID: "@two:hs", TS: 20, NotBefore: 20, NotAfter: 200,
			Signed:     []byte{0x00, 0xff, '{', '}', 0x80}, // stored verbatim, even if not UTF-8
			LookupHash: "newhash",
		}
		must(t, s.PutAssociation(ctx, b))
		got, err = s.Association(ctx, "email", "u@example.org", 150)
		must(t, err)
		if got.MXID != "@two:hs" || !bytes.Equal(got.Signed, b.Signed) || got.LookupHash != "newhash" ||
			got.TS != 20 || got.NotBefore != 20 || got.NotAfter != 200 {
			t.Fatalf("after upsert got %+v", got)
		}
		var n int64
		must(t, s.db.Model(&Association{}).Count(&n).Error)
		if n != 1 {
			t.Errorf("%d rows after upsert, want 1", n)
		}
	})
}

func TestBulkAssociations(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const now = int64(1_000_000)
		var (
			pairs  []ThreePID
			stored []Association
			want   = map[ThreePID]string{}
		)
		for i := range 2000 {
			p := ThreePID{"email", fmt.Sprintf("user%d@example.org", i)}
			if i%2 == 1 {
				p = ThreePID{"msisdn", fmt.Sprintf("44770090%04d", i)}
			}
			pairs = append(pairs, p)
			mxid := fmt.Sprintf("@u%d:hs", i)
			switch i % 5 {
			case 0, 1: // bound and valid
				stored = append(stored, assoc(p.Medium, p.Address, mxid, now-10, now+10))
				want[p] = mxid
			case 2: // bound but expired
				stored = append(stored, assoc(p.Medium, p.Address, mxid, now-20, now-10))
			case 3: // bound but not yet valid
				stored = append(stored, assoc(p.Medium, p.Address, mxid, now+10, now+20))
			case 4: // unbound
			}
		}
		// Same address under the other medium must not match.
		stored = append(stored, assoc("msisdn", "user0@example.org", "@wrongmedium:hs", 0, now*2))
		must(t, s.InsertAssociations(ctx, stored))
		// Duplicates and unknown pairs in the query are harmless.
		query := append(slices.Clone(pairs), pairs[:100]...)
		query = append(query, ThreePID{"email", "nobody@example.org"}, ThreePID{"carrier-pigeon", "x"})

		got, err := s.BulkAssociations(ctx, query, now)
		must(t, err)
		if len(got) != len(want) {
			t.Errorf("got %d associations, want %d", len(got), len(want))
		}
		for p, mxid := range want {
			a, ok := got[p]
			if !ok || a.MXID != mxid || a.Medium != p.Medium || a.Address != p.Address || len(a.Signed) == 0 {
				t.Fatalf("%v: got %+v (found=%v), want mxid %s", p, a, ok, mxid)
			}
		}
		if empty, err := s.BulkAssociations(ctx, nil, now); err != nil || len(empty) != 0 {
			t.Errorf("empty query: %v, %v", empty, err)
		}
	})
}

func TestLookupHashes(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const now = int64(5000)
		var (
			stored []Association
			query  []string
			want   = map[string]string{}
		)
		for i := range 1500 {
			a := assoc("email", fmt.Sprintf("l%d@example.org", i), fmt.Sprintf("@l%d:hs", i), 0, 10000)
			if i%3 == 0 {
				a.NotAfter = now - 1 // expired
			} else {
				want[a.LookupHash] = a.MXID
			}
			stored = append(stored, a)
			query = append(query, a.LookupHash, "missing-"+a.LookupHash)
		}
		must(t, s.InsertAssociations(ctx, stored))
		got, err := s.LookupHashes(ctx, append(query, query[:10]...), now)
		must(t, err)
		if len(got) != len(want) {
			t.Errorf("got %d, want %d", len(got), len(want))
		}
		for h, mxid := range want {
			if got[h] != mxid {
				t.Fatalf("hash %s -> %q, want %q", h, got[h], mxid)
			}
		}
		if empty, err := s.LookupHashes(ctx, nil, now); err != nil || len(empty) != 0 {
			t.Errorf("empty query: %v, %v", empty, err)
		}
	})
}

func TestDeleteAssociation(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		must(t, s.PutAssociation(ctx, assoc("email", "del@example.org", "@owner:hs", 0, 100)))
		must(t, s.PutAssociation(ctx, assoc("msisdn", "del@example.org", "@owner:hs", 0, 100)))
		tests := []struct {
			medium, address, mxid string
			want                  bool
		}{
			{"email", "del@example.org", "@intruder:hs", false},
			{"email", "other@example.org", "@owner:hs", false},
			{"email", "del@example.org", "@owner:hs", true},
			{"email", "del@example.org", "@owner:hs", false}, // already gone
		}
		for _, tt := range tests {
			got, err := s.DeleteAssociation(ctx, tt.medium, tt.address, tt.mxid)
			must(t, err)
			if got != tt.want {
				t.Errorf("DeleteAssociation(%s, %s, %s) = %v, want %v", tt.medium, tt.address, tt.mxid, got, tt.want)
			}
		}
		if _, err := s.Association(ctx, "email", "del@example.org", 50); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted association still found: %v", err)
		}
		if _, err := s.Association(ctx, "msisdn", "del@example.org", 50); err != nil {
			t.Errorf("other medium deleted too: %v", err)
		}
	})
}

func TestRehashAssociations(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var stored []Association
		for i := range 1234 {
			stored = append(stored, assoc([]string{"email", "msisdn"}[i%2], fmt.Sprintf("r%d", i), fmt.Sprintf("@r%d:hs", i), 0, 100))
		}
		must(t, s.InsertAssociations(ctx, stored))
		// Delete a few to leave gaps in the id sequence.
		for i := 0; i < 1234; i += 97 {
			_, err := s.DeleteAssociation(ctx, stored[i].Medium, stored[i].Address, stored[i].MXID)
			must(t, err)
		}
		live := 1234 - (1234+96)/97
		f := func(medium, address string) string { return "pepper2:" + medium + ":" + address }

		n, err := s.RehashAssociations(ctx, f)
		must(t, err)
		if n != live {
			t.Errorf("rehashed %d, want %d", n, live)
		}
		if n, err := s.RehashAssociations(ctx, f); err != nil || n != 0 {
			t.Errorf("second rehash changed %d rows (err %v), want 0", n, err)
		}
		var oldHashes, newHashes []string
		for _, a := range stored {
			oldHashes = append(oldHashes, a.LookupHash)
			newHashes = append(newHashes, f(a.Medium, a.Address))
		}
		if got, err := s.LookupHashes(ctx, oldHashes, 50); err != nil || len(got) != 0 {
			t.Errorf("old hashes still resolve: %d, %v", len(got), err)
		}
		got, err := s.LookupHashes(ctx, newHashes, 50)
		must(t, err)
		if len(got) != live {
			t.Errorf("%d new hashes resolve, want %d", len(got), live)
		}
		if got[f("msisdn", "r1")] != "@r1:hs" {
			t.Errorf("r1 -> %q", got[f("msisdn", "r1")])
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.RehashAssociations(cctx, f); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled rehash: err = %v", err)
		}
	})
}

func TestInsertAssociations(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var as []Association
		for i := range 2500 {
			as = append(as, assoc("email", fmt.Sprintf("i%d@example.org", i), "@i:hs", 0, 100))
		}
		must(t, s.InsertAssociations(ctx, as))
		var n int64
		must(t, s.db.Model(&Association{}).Count(&n).Error)
		if n != 2500 {
			t.Errorf("%d rows, want 2500", n)
		}
		if as[0].ID != 0 {
			t.Error("InsertAssociations modified its argument")
		}
		err := s.InsertAssociations(ctx, as[:1])
		if !errors.Is(err, ErrDuplicate) {
			t.Errorf("duplicate insert: err = %v, want ErrDuplicate", err)
		}
	})
}

// ---------------------------------------------------------------- invites

func TestInvites(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mk := func(token, address, pub string) Invite {
			return Invite{
				Token: token, Medium: "email", Address: address,
				RoomID: "!room:hs", Sender: "@alice:hs",
				EphemeralPublicKey: pub, EphemeralPrivateKey: "priv-" + pub,
				Params:    []byte(`{"room_name":"Room","sender_display_name":"Alice"}`),
				CreatedAt: t0,
			}
		}
		for _, inv := range []Invite{
			mk("t1", "bob@example.org", "PubKey1"),
			mk("t2", "carol@example.org", "PubKey2"),
			mk("t3", "bob@example.org", "PubKey3"),
			mk("t4", "bob@example.org", "PubKey4"),
		} {
			must(t, s.CreateInvite(ctx, inv))
		}
		if err := s.CreateInvite(ctx, mk("t1", "x@example.org", "other")); !errors.Is(err, ErrDuplicate) {
			t.Errorf("duplicate token: err = %v, want ErrDuplicate", err)
		}

		got, err := s.InviteByToken(ctx, "t2")
		must(t, err)
		want := mk("t2", "carol@example.org", "PubKey2")
		if got.ID == 0 || got.Token != want.Token || got.Address != want.Address || got.RoomID != want.RoomID ||
			got.Sender != want.Sender || got.EphemeralPublicKey != want.EphemeralPublicKey ||
			got.EphemeralPrivateKey != want.EphemeralPrivateKey || !bytes.Equal(got.Params, want.Params) ||
			!got.CreatedAt.Equal(t0.Truncate(time.Microsecond)) || got.DeliveredAt != nil {
			t.Errorf("InviteByToken = %+v", got)
		}
		if _, err := s.InviteByToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown token: err = %v", err)
		}

		pending, err := s.PendingInvites(ctx, "email", "bob@example.org")
		must(t, err)
		if toks := inviteTokens(pending); !slices.Equal(toks, []string{"t1", "t3", "t4"}) {
			t.Fatalf("pending = %v", toks)
		}
		n, err := s.MarkInvitesDelivered(ctx, []uint{pending[1].ID}, t0.Add(time.Hour))
		must(t, err)
		if n != 1 {
			t.Errorf("marked %d, want 1", n)
		}
		if n, _ := s.MarkInvitesDelivered(ctx, []uint{pending[1].ID}, t0.Add(2*time.Hour)); n != 0 {
			t.Errorf("re-marked %d, want 0", n)
		}
		pending, err = s.PendingInvites(ctx, "email", "bob@example.org")
		must(t, err)
		if toks := inviteTokens(pending); !slices.Equal(toks, []string{"t1", "t4"}) {
			t.Errorf("pending after delivery = %v", toks)
		}
		delivered, err := s.InviteByToken(ctx, "t3")
		must(t, err)
		if delivered.DeliveredAt == nil || !delivered.DeliveredAt.Equal(t0.Add(time.Hour).Truncate(time.Microsecond)) {
			t.Errorf("DeliveredAt = %v", delivered.DeliveredAt)
		}
		if p, err := s.PendingInvites(ctx, "msisdn", "bob@example.org"); err != nil || len(p) != 0 {
			t.Errorf("other medium pending = %v, %v", p, err)
		}

		keys := []struct {
			key  string
			want bool
		}{
			{"PubKey1", true},
			{"PubKey3", true}, // delivered invites' keys stay valid
			{"pubkey1", false},
			{"PubKey", false},
			{"PubKey1=", false},
			{"", false},
		}
		for _, k := range keys {
			ok, err := s.EphemeralKeyValid(ctx, k.key)
			must(t, err)
			if ok != k.want {
				t.Errorf("EphemeralKeyValid(%q) = %v, want %v", k.key, ok, k.want)
			}
		}
	})
}

func inviteTokens(invs []Invite) []string {
	var out []string
	for _, i := range invs {
		out = append(out, i.Token)
	}
	return out
}

// ---------------------------------------------------------------- settings

func TestSettings(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.Setting(ctx, "pepper"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing setting: err = %v", err)
		}
		steps := []struct {
			op, key, value, want string
		}{
			{"set", "a", "1", "1"},
			{"set", "a", "2", "2"},
			{"set", "b", "", ""},
			{"init", "a", "ignored", "2"},
			{"init", "c", "fresh", "fresh"},
			{"init", "c", "again", "fresh"},
		}
		for _, st := range steps {
			var (
				got string
				err error
			)
			switch st.op {
			case "set":
				must(t, s.SetSetting(ctx, st.key, st.value))
				got, err = s.Setting(ctx, st.key)
			case "init":
				got, err = s.SettingOrInit(ctx, st.key, func() string { return st.value })
			}
			if err != nil || got != st.want {
				t.Errorf("%s %s=%q: got %q, %v; want %q", st.op, st.key, st.value, got, err, st.want)
			}
		}
		called := false
		if _, err := s.SettingOrInit(ctx, "a", func() string { called = true; return "x" }); err != nil || called {
			t.Errorf("init called for existing key (err %v)", err)
		}

		// Race: every caller must end up with the same value.
		for round := range 5 {
			key := fmt.Sprintf("race-%d", round)
			vals := make([]string, 8)
			errs := make([]error, 8)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range vals {
				wg.Go(func() {
					<-start
					vals[i], errs[i] = s.SettingOrInit(ctx, key, func() string { return fmt.Sprint("v", i) })
				})
			}
			close(start)
			wg.Wait()
			for i := range vals {
				if errs[i] != nil || vals[i] != vals[0] {
					t.Fatalf("round %d: caller %d got %q (%v), caller 0 got %q", round, i, vals[i], errs[i], vals[0])
				}
			}
			if stored, _ := s.Setting(ctx, key); stored != vals[0] {
				t.Errorf("stored %q, callers got %q", stored, vals[0])
			}
		}
	})
}

// ---------------------------------------------------------------- benchmarks

const benchRows = 100_000

var bench struct {
	once  sync.Once
	dir   string
	store *Store
	err   error
}

// benchStore returns a SQLite store seeded with 100k associations (half
// email, half msisdn), shared by the benchmarks and removed by TestMain.
func benchStore(b *testing.B) *Store {
	b.Helper()
	bench.once.Do(func() {
		bench.dir, bench.err = os.MkdirTemp("", "sigil-store-bench-")
		if bench.err != nil {
			return
		}
		bench.store, bench.err = Open(context.Background(), filepath.Join(bench.dir, "bench.db"))
		if bench.err != nil {
			return
		}
		as := make([]Association, benchRows)
		for i := range as {
			as[i] = benchAssoc(i)
		}
		start := time.Now()
		bench.err = bench.store.InsertAssociations(context.Background(), as)
		b.Logf("seeded %d associations in %v", benchRows, time.Since(start))
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.store
}

func benchAssoc(i int) Association {
	if i%2 == 0 {
		return assoc("email", fmt.Sprintf("bench%d@example.org", i), fmt.Sprintf("@b%d:hs", i), 0, 1<<62)
	}
	return assoc("msisdn", fmt.Sprintf("1555%07d", i), fmt.Sprintf("@b%d:hs", i), 0, 1<<62)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.store != nil {
		_ = bench.store.Close()
	}
	if bench.dir != "" {
		_ = os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// 1000 keys, 3 in 4 bound, spread over the table and both media.
func BenchmarkBulkAssociations(b *testing.B) {
	s := benchStore(b)
	pairs := make([]ThreePID, 0, 1000)
	for i := range 1000 {
		a := benchAssoc(i * (benchRows / 1000))
		if i%4 == 3 {
			a.Address = "unbound-" + a.Address
		}
		pairs = append(pairs, ThreePID{a.Medium, a.Address})
	}
	ctx := context.Background()
	for b.Loop() {
		got, err := s.BulkAssociations(ctx, pairs, 1)
		if err != nil || len(got) != 750 {
			b.Fatalf("got %d, %v", len(got), err)
		}
	}
}

func BenchmarkLookupHashes(b *testing.B) {
	s := benchStore(b)
	hashes := make([]string, 0, 1000)
	for i := range 1000 {
		h := benchAssoc(i * (benchRows / 1000)).LookupHash
		if i%4 == 3 {
			h = "unknown-" + h
		}
		hashes = append(hashes, h)
	}
	ctx := context.Background()
	for b.Loop() {
		got, err := s.LookupHashes(ctx, hashes, 1)
		if err != nil || len(got) != 750 {
			b.Fatalf("got %d, %v", len(got), err)
		}
	}
}
