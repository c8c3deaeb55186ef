package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
)

// sydentTestSchema stands in for the tables Sydent creates at its first
// start, with the columns seedSydent writes and Sydent's lookups read.
const sydentTestSchema = `
CREATE TABLE hashing_metadata (id integer primary key, lookup_pepper varchar(256));
CREATE TABLE accounts (user_id TEXT NOT NULL PRIMARY KEY, created_ts BIGINT NOT NULL, consent_version TEXT);
CREATE TABLE tokens (token TEXT NOT NULL PRIMARY KEY, user_id TEXT NOT NULL);
CREATE TABLE local_threepid_associations (id integer primary key autoincrement, medium varchar(16) not null,
	address varchar(256) not null, mxid varchar(256), ts integer, notBefore bigint, notAfter bigint, lookup_hash varchar(256));
CREATE TABLE global_threepid_associations (id integer primary key autoincrement, medium varchar(16) not null,
	address varchar(256) not null, mxid varchar(256) not null, ts integer not null, notBefore bigint not null,
	notAfter integer not null, originServer varchar(255) not null, originId integer not null, sgAssoc text not null,
	lookup_hash varchar(256));
CREATE INDEX global_hash ON global_threepid_associations (lookup_hash);
CREATE INDEX global_medium_lower_address ON global_threepid_associations (medium, lower(address));
INSERT INTO hashing_metadata (id, lookup_pepper) VALUES (0, 'abcde');
`

// TestSeedSydent seeds a stand-in of Sydent's database and checks that the
// v2 bodies the generator sends hash exactly the bound half of their
// addresses to rows there, that the hash is Sydent's (sha256 of "address
// medium pepper", URL-safe unpadded base64), and that the pepper, the
// token and the signed associations are where Sydent reads them.
func TestSeedSydent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := sydentDBPath(dir)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(sydentTestSchema); err != nil {
		t.Fatal(err)
	}
	key, err := signing.LoadOrCreateKeyFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	const n = seedChunk + 17 // more than one chunk, and a partial one
	fx := fixture{N: n, Pepper: loadPepper, Token: "tok"}
	if err := seedSydent(ctx, path, key, n, fx.Pepper, fx.Token); err != nil {
		t.Fatal(err)
	}

	var pepper, user string
	if err := db.QueryRow(`SELECT lookup_pepper FROM hashing_metadata`).Scan(&pepper); err != nil || pepper != loadPepper {
		t.Errorf("pepper %q, %v; want %q (replacing Sydent's own)", pepper, err, loadPepper)
	}
	if err := db.QueryRow(`SELECT a.user_id FROM accounts a, tokens t WHERE t.user_id = a.user_id AND t.token = ?`, "tok").Scan(&user); err != nil || user != sydentUser {
		t.Errorf("token's account %q, %v", user, err)
	}
	var local, global int
	_ = db.QueryRow(`SELECT count(*) FROM local_threepid_associations`).Scan(&local)
	_ = db.QueryRow(`SELECT count(*) FROM global_threepid_associations`).Scan(&global)
	if local != n || global != n {
		t.Fatalf("%d local and %d global associations, want %d", local, global, n)
	}

	// Sydent's hash, computed here independently of signing.LookupHash.
	sum := sha256.Sum256([]byte("user7@load.test email " + loadPepper))
	wantHash := base64.RawURLEncoding.EncodeToString(sum[:])
	var hash, sg, origin string
	if err := db.QueryRow(`SELECT g.lookup_hash, g.sgAssoc, g.originServer FROM global_threepid_associations g
		JOIN local_threepid_associations l ON l.id = g.originId
		WHERE g.medium = 'email' AND lower(g.address) = lower('USER7@load.test') AND l.lookup_hash = g.lookup_hash`).Scan(&hash, &sg, &origin); err != nil {
		t.Fatal(err)
	}
	if hash != wantHash {
		t.Errorf("lookup_hash of user7 = %s, want %s", hash, wantHash)
	}
	var assoc struct {
		Address, MXID string
		Signatures    map[string]map[string]string
	}
	if err := json.Unmarshal([]byte(sg), &assoc); err != nil || assoc.Address != email(7) || assoc.MXID != mxid(7) || assoc.Signatures[serverName] == nil || origin != serverName {
		t.Errorf("sgAssoc %s (%v), originServer %s", sg, err, origin)
	}

	// The generator's own v2 and bulk bodies find the bound half.
	p := benchPools(n, fx)
	now := time.Now().UnixMilli()
	for _, b := range p.hashed[:2] {
		var req struct{ Pepper string }
		_ = json.Unmarshal(b.json, &req)
		if req.Pepper != loadPepper {
			t.Fatalf("v2 body pepper %q", req.Pepper)
		}
		for _, i := range b.picks {
			var got string
			err := db.QueryRow(`SELECT mxid FROM global_threepid_associations WHERE lookup_hash = ? AND notBefore < ? AND notAfter > ?`,
				signing.LookupHash(email(i), "email", loadPepper), now, now).Scan(&got)
			switch {
			case i < n && (err != nil || got != mxid(i)):
				t.Fatalf("binding %d: %q, %v", i, got, err)
			case i >= n && err != sql.ErrNoRows:
				t.Fatalf("unbound %d found: %q, %v", i, got, err)
			}
		}
	}
	var req struct{ Threepids [][2]string }
	if err := json.Unmarshal(p.bulk[0].json, &req); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, tp := range req.Threepids {
		var k int
		_ = db.QueryRow(`SELECT count(*) FROM global_threepid_associations WHERE medium = ? AND lower(address) = lower(?)`, tp[0], tp[1]).Scan(&k)
		found += k
	}
	if found != len(req.Threepids)/2 {
		t.Errorf("bulk body: %d of %d addresses bound, want half", found, len(req.Threepids))
	}
}

func TestSydentMarkdown(t *testing.T) {
	r := runResult{DB: "sqlite", N: 10000, Concurrency: 16, SydentVersion: "Sydent 2.6.1", SydentConcurrency: 4,
		Sydent: []sydentResult{
			{workloadResult: workloadResult{Name: wlBulkLookupV1, RPS: 70, ServerCPUMS: 14}, SigilRPS: 2800, SigilCPUMS: 0.35, PerCore: 40},
			{workloadResult: workloadResult{Name: wlLookupV2, RPS: 30, ServerCPUMS: 30}},
		}}
	md := r.markdown()
	for _, want := range []string{"**4 concurrent clients** (Sigil: 16)", "| Sigil / Sydent per core |",
		"| bulk_lookup_v1 | 70.0 | 2800 | 14.00 | 0.350 | **40.0×** |", "| lookup_v2 | 30.0 | – | 30.00 | – | – |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
