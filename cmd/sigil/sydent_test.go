package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

// sydentSchema is Sydent's SQLite schema as its migrations leave it
// (sydent/db/*.sql and the upgrades in sydent/db/sqlitedb.py, schema
// version 4), written here for the tests: the tables import-sydent reads.
const sydentSchema = `
CREATE TABLE local_threepid_associations (id integer primary key autoincrement,
  medium varchar(16) not null, address varchar(256) not null, mxid varchar(256),
  ts integer, notBefore bigint, notAfter bigint, lookup_hash VARCHAR(256));
CREATE UNIQUE INDEX local_threepid_medium_address on local_threepid_associations(medium, address);
CREATE TABLE global_threepid_associations (id integer primary key autoincrement,
  medium varchar(16) not null, address varchar(256) not null, mxid varchar(256) not null,
  ts integer not null, notBefore bigint not null, notAfter integer not null,
  originServer varchar(255) not null, originId integer not null, sgAssoc text not null,
  lookup_hash VARCHAR(256));
CREATE INDEX global_threepid_medium_address on global_threepid_associations (medium, address);
CREATE UNIQUE INDEX global_threepid_originServer_originId on global_threepid_associations (originServer, originId);
CREATE INDEX global_threepid_lookup_hash ON global_threepid_associations(lookup_hash);
CREATE TABLE invite_tokens (id integer primary key, medium varchar(16) not null,
  address varchar(256) not null, room_id varchar(256) not null, sender varchar(256) not null,
  token varchar(256) not null, received_ts bigint, sent_ts bigint);
CREATE INDEX invite_token_medium_address on invite_tokens(medium, address);
CREATE INDEX invite_token_token on invite_tokens(token);
CREATE TABLE ephemeral_public_keys(id integer primary key, public_key varchar(256) not null,
  verify_count bigint default 0, persistence_ts bigint);
CREATE UNIQUE INDEX ephemeral_public_keys_index on ephemeral_public_keys(public_key);
CREATE TABLE hashing_metadata (lookup_pepper varchar(256));
PRAGMA user_version = 4;
`

// sydentFixture is a Sydent installation: its configuration, its
// database and what was put in it.
type sydentFixture struct {
	conf, db   string
	serverName string
	key        signing.Key
	// sgAssoc is what Sydent published for each address.
	sgAssoc map[string]string
	// pendingEphemeral is the ephemeral key of the pending invite.
	ephemeral string
}

// pythonDumps writes a signed association as Python's json.dumps does
// (", " and ": ", insertion order), the way Sydent stores sgAssoc.
func pythonDumps(medium, address, mxid string, ts, nb, na int64, server, keyID, sig string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return fmt.Sprintf(`{"medium": %s, "address": %s, "mxid": %s, "ts": %d, "not_before": %d, "not_after": %d, "signatures": {%s: {%s: %s}}}`,
		q(medium), q(address), q(mxid), ts, nb, na, q(server), q(keyID), q(sig))
}

// writeSydent builds a Sydent installation in dir with n email bindings
// signed as Sydent signs them (signedjson over the six fields), one
// msisdn binding, one deleted binding (mxid NULL), a binding whose
// published association carries an "invites" field, one pending and one
// delivered invite, and their ephemeral keys.
func writeSydent(t testing.TB, dir, serverName string, n int) *sydentFixture {
	t.Helper()
	seed := make([]byte, 32)
	rand.Read(seed)
	key, err := signing.KeyFromSeed("ed25519:0", signing.EncodeBase64(seed))
	if err != nil {
		t.Fatal(err)
	}
	f := &sydentFixture{conf: filepath.Join(dir, "sydent.conf"), db: filepath.Join(dir, "sydent.db"),
		serverName: serverName, key: key, sgAssoc: map[string]string{}}
	conf := fmt.Sprintf("[DEFAULT]\n\n[general]\nserver.name = %s\nlog.level = INFO\n\n[db]\ndb.file = sydent.db\n\n"+
		"[http]\nclientapi.http.port = 8090\n\n[crypto]\ned25519.signingkey = ed25519 0 %s\n",
		serverName, signing.EncodeBase64(seed))
	if err := os.WriteFile(f.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(sydentSchema); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	local, _ := tx.Prepare(`INSERT INTO local_threepid_associations (medium, address, lookup_hash, mxid, ts, notBefore, notAfter) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	global, _ := tx.Prepare(`INSERT INTO global_threepid_associations (medium, address, lookup_hash, mxid, ts, notBefore, notAfter, originServer, originId, sgAssoc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	ts := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	bind := func(medium, address, mxid string, extra map[string]any) {
		t.Helper()
		nb, na := ts, ts+100*365*24*3600*1000
		obj := map[string]any{"medium": medium, "address": address, "mxid": mxid, "ts": ts, "not_before": nb, "not_after": na}
		for k, v := range extra {
			obj[k] = v
		}
		sig, err := signing.Signature(obj, key)
		if err != nil {
			t.Fatal(err)
		}
		sg := pythonDumps(medium, address, mxid, ts, nb, na, serverName, key.ID, sig)
		if extra != nil {
			signed, _ := signing.SignJSON(obj, serverName, key)
			b, _ := json.Marshal(signed)
			sg = string(b)
		}
		res, err := local.Exec(medium, address, "hash", mxid, ts, nb, na)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := res.LastInsertId()
		if _, err := global.Exec(medium, address, "hash", mxid, ts, nb, na, serverName, id, sg); err != nil {
			t.Fatal(err)
		}
		f.sgAssoc[address] = sg
		ts++
	}
	for i := 0; i < n; i++ {
		bind("email", fmt.Sprintf("user%d@example.org", i), fmt.Sprintf("@user%d:hs.example.org", i), nil)
	}
	bind("msisdn", "447700900123", "@phone:hs.example.org", nil)
	bind("email", "invited@example.org", "@invited:hs.example.org", map[string]any{"invites": []any{}})
	// A binding deleted in Sydent: the local row stays with mxid NULL.
	if _, err := tx.Exec(`INSERT INTO local_threepid_associations (medium, address, mxid) VALUES ('email', 'gone@example.org', NULL)`); err != nil {
		t.Fatal(err)
	}
	// Replicated from a peer: not this server's to serve.
	if _, err := tx.Exec(`INSERT INTO global_threepid_associations (medium, address, mxid, ts, notBefore, notAfter, originServer, originId, sgAssoc) VALUES ('email', 'peer@example.org', '@p:hs.example.org', 1, 1, 2, 'peer.example.org', 1, '{}')`); err != nil {
		t.Fatal(err)
	}
	for i, state := range []string{"pending", "sent"} {
		pub := make([]byte, 32)
		rand.Read(pub)
		eph := base64.RawURLEncoding.EncodeToString(pub) // Sydent encodes them URL-safe
		if state == "pending" {
			f.ephemeral = eph
		}
		var sent any
		if state == "sent" {
			sent = ts
		}
		if _, err := tx.Exec(`INSERT INTO ephemeral_public_keys (public_key, persistence_ts) VALUES (?, ?)`, eph, ts); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO invite_tokens (medium, address, room_id, sender, token, received_ts, sent_ts) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			"email", fmt.Sprintf("Guest%d@Example.org", i), "!room:hs.example.org", "@host:hs.example.org", "token-"+state, ts, sent); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestImportSydent(t *testing.T) {
	dir := t.TempDir()
	syd := writeSydent(t, dir, "id.example.org", 50)
	s := newSetup(t, "")

	out := s.mustRun("import-sydent", "-sydent-config", syd.conf, "-batch", "16")
	for _, want := range []string{
		"signing key ed25519:0 (public " + syd.key.PublicBase64() + "): installed at",
		"bindings:       52 imported (1 signed again), 0 already there",
		"invites:        1 imported, 0 already there",
		"ephemeral keys: 2 imported, 0 already there",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}

	// Idempotent: a second run changes nothing.
	out = s.mustRun("import-sydent", "-sydent-config", syd.conf)
	for _, want := range []string{"already installed", "0 imported (0 signed again), 52 already there", "invites:        0 imported, 1 already there"} {
		if !strings.Contains(out, want) {
			t.Errorf("second run lacks %q:\n%s", want, out)
		}
	}

	// Lookups answer with the signatures Sydent made, which verify with
	// the key Sigil now serves.
	a, base := startServer(t, s, ioDiscard{})
	if a.key.PublicBase64() != syd.key.PublicBase64() {
		t.Fatalf("Sigil signs with %s, Sydent's key is %s", a.key.PublicBase64(), syd.key.PublicBase64())
	}
	for _, addr := range []string{"user0@example.org", "user49@example.org", "447700900123", "invited@example.org"} {
		medium := "email"
		if !strings.Contains(addr, "@") {
			medium = "msisdn"
		}
		var got map[string]any
		getJSON(t, base+v1+"/lookup?medium="+medium+"&address="+url.QueryEscape(addr), &got)
		if got["mxid"] == nil {
			t.Errorf("lookup of %s: %v", addr, got)
			continue
		}
		if err := signing.VerifyJSON(got, syd.serverName, map[string]ed25519.PublicKey{"ed25519:0": syd.key.Public()}); err != nil {
			t.Errorf("lookup of %s does not verify with Sydent's key: %v", addr, err)
		}
		if addr == "invited@example.org" {
			if _, extra := got["invites"]; extra {
				t.Errorf("the re-signed association kept Sydent's extra field: %v", got)
			}
			continue
		}
		var old map[string]any
		json.Unmarshal([]byte(syd.sgAssoc[addr]), &old)
		if fmt.Sprint(old["signatures"]) != fmt.Sprint(got["signatures"]) {
			t.Errorf("%s: signature %v, Sydent published %v", addr, got["signatures"], old["signatures"])
		}
	}
	var got map[string]any
	getJSON(t, base+v1+"/lookup?medium=email&address=gone@example.org", &got)
	if len(got) != 0 {
		t.Errorf("a binding deleted in Sydent was imported: %v", got)
	}
	getJSON(t, base+v1+"/lookup?medium=email&address=peer@example.org", &got)
	if len(got) != 0 {
		t.Errorf("a peer's binding was imported: %v", got)
	}
	var valid struct{ Valid bool }
	getJSON(t, base+v1+"/pubkey/ephemeral/isvalid?public_key="+url.QueryEscape(syd.ephemeral), &valid)
	if !valid.Valid {
		t.Error("the pending invite's ephemeral key is not valid after the import")
	}
	out = s.mustRun("invites", "list")
	if !strings.Contains(out, "guest0@example.org") || strings.Contains(out, "token-sent") {
		t.Errorf("imported invites (pending only, address case-folded):\n%s", out)
	}
}

func TestImportSydentRefusals(t *testing.T) {
	dir := t.TempDir()
	syd := writeSydent(t, dir, "id.example.org", 1)
	t.Run("server name differs", func(t *testing.T) {
		other := writeSydent(t, t.TempDir(), "other.example.org", 1)
		s := newSetup(t, "")
		code, _, errs := s.run("import-sydent", "-sydent-config", other.conf)
		if code != exitUsage || !strings.Contains(errs, `Sydent signed as "other.example.org"`) {
			t.Errorf("exit %d\n%s", code, errs)
		}
	})
	t.Run("another key is installed", func(t *testing.T) {
		s := newSetup(t, "")
		s.app().Close() // makes a key of its own
		code, _, errs := s.run("import-sydent", "-sydent-config", syd.conf)
		if code != exitUsage || !strings.Contains(errs, "-replace-key") {
			t.Errorf("exit %d\n%s", code, errs)
		}
		out := s.mustRun("import-sydent", "-sydent-config", syd.conf, "-replace-key")
		if !strings.Contains(out, "installed at") {
			t.Errorf("with -replace-key:\n%s", out)
		}
		backups, _ := filepath.Glob(filepath.Join(s.dir, "signing.key.replaced-*"))
		if len(backups) != 1 {
			t.Errorf("the replaced key was not kept: %v", backups)
		}
	})
	t.Run("no config", func(t *testing.T) {
		s := newSetup(t, "")
		if code, _, _ := s.run("import-sydent"); code != exitUsage {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("corrupt key in sydent.conf", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "sydent.conf")
		os.WriteFile(conf, []byte("[general]\nserver.name = id.example.org\n[crypto]\ned25519.signingkey = ed25519 0 !!!\n"), 0o600)
		s := newSetup(t, "")
		if code, _, errs := s.run("import-sydent", "-sydent-config", conf, "-sydent-db", syd.db); code != exitFailure || !strings.Contains(errs, "ed25519.signingkey") {
			t.Errorf("exit %d\n%s", code, errs)
		}
	})
}

func TestParseSydentKeyFormats(t *testing.T) {
	seed := make([]byte, 32)
	rand.Read(seed)
	k1, err := parseSydentKey("ed25519 0 " + signing.EncodeBase64(seed))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := parseSydentKey(fmt.Sprintf("%x", seed)) // before Sydent 1.0: a hex seed
	if err != nil {
		t.Fatal(err)
	}
	if k1.PublicBase64() != k2.PublicBase64() || k2.ID != "ed25519:0" {
		t.Errorf("formats disagree: %s %s", k1.PublicBase64(), k2.PublicBase64())
	}
	for _, bad := range []string{"", "rsa 0 abc", "ed25519 0", "zz"} {
		if _, err := parseSydentKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestWriteSydentFixture writes a Sydent installation of
// SIGIL_TEST_SYDENT_BINDINGS bindings to SIGIL_TEST_SYDENT_DIR, for trying
// import-sydent by hand (the README's transcript); skipped otherwise.
func TestWriteSydentFixture(t *testing.T) {
	dir := os.Getenv("SIGIL_TEST_SYDENT_DIR")
	if dir == "" {
		t.Skip("SIGIL_TEST_SYDENT_DIR not set")
	}
	n, _ := strconv.Atoi(os.Getenv("SIGIL_TEST_SYDENT_BINDINGS"))
	os.MkdirAll(dir, 0o700)
	syd := writeSydent(t, dir, "id.example.org", max(n, 1))
	t.Logf("wrote %s and %s", syd.conf, syd.db)
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	_ = context.Background
}
