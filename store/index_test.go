package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// realHash is a lookup hash as the handlers compute it (base64url SHA-256).
func realHash(medium, address, pepper string) string {
	sum := sha256.Sum256([]byte(address + " " + medium + " " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// dbOnly returns a view of s that answers everything from the database.
func dbOnly(s *Store) *Store {
	c := *s
	c.ix = nil
	return &c
}

func waitIndex(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitIndex(ctx); err != nil {
		t.Fatalf("WaitIndex: %v", err)
	}
}

// probe is a set of lookups whose answers are compared between the index
// and the database.
type probe struct {
	pairs  []ThreePID
	hashes []string
	times  []int64
}

func (p *probe) add(medium, address, hash string) {
	p.pairs = append(p.pairs, ThreePID{medium, address})
	p.hashes = append(p.hashes, hash)
}

// answers is what every lookup path says about the probe at each time.
type answers struct {
	hashes []map[string]string
	pairs  [][]string
	signed []map[ThreePID]string // "" when not found
}

func (p *probe) ask(t testing.TB, s *Store) answers {
	t.Helper()
	ctx := context.Background()
	var a answers
	for _, now := range p.times {
		h, err := s.LookupHashes(ctx, p.hashes, now)
		must(t, err)
		ps, err := s.LookupThreePIDs(ctx, p.pairs, now)
		must(t, err)
		signed := map[ThreePID]string{}
		for _, pair := range p.pairs {
			sg, err := s.SignedAssociation(ctx, pair.Medium, pair.Address, now)
			as, err2 := s.Association(ctx, pair.Medium, pair.Address, now)
			switch {
			case err == nil && err2 == nil && bytes.Equal(sg, as.Signed):
				signed[pair] = string(sg)
			case errors.Is(err, ErrNotFound) && errors.Is(err2, ErrNotFound):
				signed[pair] = ""
			default: // never the database's answer
				signed[pair] = fmt.Sprintf("SignedAssociation %q, %v; Association %q, %v", sg, err, as.Signed, err2)
			}
		}
		a.hashes = append(a.hashes, h)
		a.pairs = append(a.pairs, ps)
		a.signed = append(a.signed, signed)
	}
	return a
}

// agree fails unless s answers p exactly as the database does.
func agree(t testing.TB, s *Store, p *probe) {
	t.Helper()
	if !s.IndexStats().Loaded {
		t.Fatal("index not loaded")
	}
	if diff := p.diff(t, s); diff != "" {
		t.Fatal(diff)
	}
}

func (p *probe) diff(t testing.TB, s *Store) string {
	got, want := p.ask(t, s), p.ask(t, dbOnly(s))
	for i, now := range p.times {
		if !maps.Equal(got.hashes[i], want.hashes[i]) {
			return fmt.Sprintf("LookupHashes at %d: index %v\ndatabase %v", now, got.hashes[i], want.hashes[i])
		}
		if !slices.Equal(got.pairs[i], want.pairs[i]) {
			return fmt.Sprintf("LookupThreePIDs at %d: index %q\ndatabase %q", now, got.pairs[i], want.pairs[i])
		}
		if !maps.Equal(got.signed[i], want.signed[i]) {
			return fmt.Sprintf("SignedAssociation at %d: index %q\ndatabase %q", now, got.signed[i], want.signed[i])
		}
	}
	return ""
}

// mixedSet returns associations that are bound, expired and not yet valid
// at now=1000, under both media, with real and odd-looking hashes, and a
// probe over them plus unbound 3PIDs.
func mixedSet(n int) ([]Association, *probe) {
	p := &probe{times: []int64{999, 1000, 2000, 2001}}
	var as []Association
	for i := range n {
		medium, addr := "email", fmt.Sprintf("m%d@example.org", i)
		if i%2 == 1 {
			medium, addr = "msisdn", fmt.Sprintf("4477009%05d", i)
		}
		a := Association{Medium: medium, Address: addr, MXID: fmt.Sprintf("@m%d:hs", i),
			TS: 1, NotBefore: 1000, NotAfter: 2000,
			Signed:     []byte(fmt.Sprintf(`{"address":%q,"n":%d}`, addr, i)),
			LookupHash: realHash(medium, addr, "pepper1")}
		switch i % 6 {
		case 1:
			a.NotBefore, a.NotAfter = 0, 999 // expired at 1000
		case 2:
			a.NotBefore, a.NotAfter = 1001, 1<<50 // not yet valid at 1000
		case 3:
			a.LookupHash = "odd:" + addr // not base64 of a digest
		case 4:
			// unbound: probed, never stored
			p.add(medium, addr, a.LookupHash)
			continue
		case 5:
			a.MXID = "" // stored verbatim, however odd
		}
		as = append(as, a)
		p.add(medium, addr, a.LookupHash)
	}
	// The same address under another medium, media and addresses that
	// differ only in where they split, and a hash that is not
	// canonical base64 (its last character has bits set that decoding
	// drops): neither may match.
	p.add("msisdn", "m0@example.org", "x")
	p.add("emai", "lm0@example.org", "z")
	p.add("", "emailm0@example.org", "w")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	h := []byte(realHash("email", "m0@example.org", "pepper1"))
	h[42] = alphabet[strings.IndexByte(alphabet, h[42])|1]
	p.add("email", "m0@example.org", string(h))
	return as, p
}

func TestIndexAgreesWithDatabase(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		as, p := mixedSet(240)
		must(t, s.InsertAssociations(ctx, as))
		waitIndex(t, s)
		agree(t, s, p)

		// Reopened: the index is built by the load, not by the writes.
		s2 := openT(t, s.ix.dsn)
		waitIndex(t, s2)
		if st := s2.IndexStats(); st.Entries != len(as) || st.Bytes <= 0 || st.Loads != 1 {
			t.Errorf("IndexStats = %+v, want %d entries", st, len(as))
		}
		agree(t, s2, p)

		// The answers really come from memory: change the database behind
		// the index's back.
		must(t, s2.wdb.Exec("DELETE FROM associations").Error)
		got, err := s2.LookupThreePIDs(ctx, p.pairs[:1], 1500)
		must(t, err)
		if got[0] != as[0].MXID {
			t.Errorf("after a raw delete the index says %q, want the indexed %q", got[0], as[0].MXID)
		}
	})
}

// TestIndexFollowsWrites checks the index after each kind of write.
func TestIndexFollowsWrites(t *testing.T) {
	forEach(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		as, p := mixedSet(120)
		must(t, s.InsertAssociations(ctx, as))
		waitIndex(t, s)
		p.add("email", "new@example.org", realHash("email", "new@example.org", "pepper1"))
		agree(t, s, p)
		for _, step := range indexWrites(as) {
			t.Run(step.name, func(t *testing.T) {
				step.do(t, s)
				agree(t, s, p)
			})
		}
		if st := s.IndexStats(); st.Loads != 1 {
			t.Errorf("the index was reloaded: %+v", st)
		}
	})
}

type indexWrite struct {
	name string
	do   func(t testing.TB, s *Store)
}

// indexWrites are writes of every kind over as (from mixedSet).
func indexWrites(as []Association) []indexWrite {
	ctx := context.Background()
	put := func(a Association) func(t testing.TB, s *Store) {
		return func(t testing.TB, s *Store) { must(t, s.PutAssociation(ctx, a)) }
	}
	with := func(a Association, f func(*Association)) Association { f(&a); return a }
	return []indexWrite{
		{"put new", put(Association{Medium: "email", Address: "new@example.org", MXID: "@new:hs",
			NotBefore: 0, NotAfter: 5000, Signed: []byte(`{"new":1}`), LookupHash: realHash("email", "new@example.org", "pepper1")})},
		{"put new mxid", put(with(as[0], func(a *Association) { a.MXID = "@other:hs"; a.Signed = []byte(`{"other":1}`) }))},
		{"put longer mxid", put(with(as[0], func(a *Association) { a.MXID = "@" + strings.Repeat("x", 300) + ":hs" }))},
		{"put new window", put(with(as[1], func(a *Association) { a.NotBefore, a.NotAfter = 0, 1<<41 }))},
		{"put new hash", put(with(as[2], func(a *Association) { a.LookupHash = realHash(a.Medium, a.Address, "other") }))},
		{"delete", func(t testing.TB, s *Store) {
			ok, err := s.DeleteAssociation(ctx, as[3].Medium, as[3].Address, as[3].MXID)
			if err != nil || !ok {
				t.Fatalf("delete: %v, %v", ok, err)
			}
		}},
		{"delete of another's", func(t testing.TB, s *Store) {
			ok, err := s.DeleteAssociation(ctx, as[4].Medium, as[4].Address, "@intruder:hs")
			if err != nil || ok {
				t.Fatalf("delete: %v, %v", ok, err)
			}
		}},
		{"rebind after delete", put(as[3])},
		{"rehash", func(t testing.TB, s *Store) {
			_, err := s.RehashAssociations(ctx, func(medium, address string) string {
				return realHash(medium, address, "pepper2")
			})
			must(t, err)
		}},
		{"insert", func(t testing.TB, s *Store) {
			var more []Association
			for i := range 1500 {
				addr := fmt.Sprintf("ins%d@example.org", i)
				more = append(more, Association{Medium: "email", Address: addr, MXID: "@ins:hs", NotAfter: 1 << 41,
					LookupHash: realHash("email", addr, "pepper2")})
			}
			must(t, s.InsertAssociations(ctx, more))
		}},
		{"failed insert", func(t testing.TB, s *Store) {
			dup := []Association{{Medium: "email", Address: "fresh@example.org", MXID: "@f:hs", NotAfter: 1 << 41}, as[5]}
			if err := s.InsertAssociations(ctx, dup); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("duplicate insert: %v", err)
			}
		}},
	}
}

// TestIndexDuringLoad writes while the load is held up, before and after
// its scan: lookups stay correct throughout (from the database), and the
// published index has every write.
func TestIndexDuringLoad(t *testing.T) {
	for _, stage := range []string{"start", "scanned"} {
		t.Run(stage, func(t *testing.T) {
			forEach(t, func(t *testing.T, s *Store) {
				ctx := context.Background()
				as, p := mixedSet(120)
				must(t, s.InsertAssociations(ctx, as))
				waitIndex(t, s) // so that only s2's load meets the hook

				release := make(chan struct{})
				var once sync.Once
				reached := make(chan struct{})
				indexLoadHook = func(at string) {
					if at == stage {
						once.Do(func() { close(reached); <-release })
					}
				}
				t.Cleanup(func() { indexLoadHook = nil })
				s2 := openT(t, s.ix.dsn)
				var released sync.Once
				unblock := func() { released.Do(func() { close(release) }) }
				t.Cleanup(unblock) // before s2.Close, even on failure
				<-reached
				p.add("email", "new@example.org", realHash("email", "new@example.org", "pepper1"))
				for _, w := range indexWrites(as) {
					w.do(t, s2)
					if s2.IndexStats().Loaded {
						t.Fatal("index published while its load is held")
					}
					if diff := p.diff(t, s2); diff != "" {
						t.Fatalf("before the load, after %s: %s", w.name, diff)
					}
				}
				unblock()
				waitIndex(t, s2)
				agree(t, s2, p)
			})
		})
	}
}

// TestIndexTwoInstances: writes through one Store reach the index of
// another on the same database: through NOTIFY on PostgreSQL (several
// instances), through the write counter on SQLite (a second process, such
// as "sigil rotate-pepper"). On PostgreSQL a lost LISTEN connection makes
// the index reload.
func TestIndexTwoInstances(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 20 * time.Millisecond
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) { testTwoInstances(t, backend) })
	}
}

func testTwoInstances(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := freshDSN(t, backend)
	a, b := openT(t, dsn), openT(t, dsn)
	if backend == DialectPostgres {
		other := openT(t, freshDSN(t, DialectPostgres)) // another schema: its own channel
		if a.ix.channel != b.ix.channel || a.ix.channel == other.ix.channel {
			t.Fatalf("channels %q %q %q", a.ix.channel, b.ix.channel, other.ix.channel)
		}
	}
	as, p := mixedSet(120)
	must(t, a.InsertAssociations(ctx, as))
	waitIndex(t, a)
	waitIndex(t, b)
	p.add("email", "new@example.org", realHash("email", "new@example.org", "pepper1"))

	// eventually waits for b's index to agree with the database.
	eventually := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			diff := ""
			if !b.IndexStats().Loaded {
				diff = "index not loaded"
			} else {
				diff = p.diff(t, b)
			}
			if diff == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal(diff)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	eventually(t)
	t.Run("latency", func(t *testing.T) {
		var worst time.Duration
		for i := range 10 {
			addr := fmt.Sprintf("lat%d@example.org", i)
			start := time.Now()
			must(t, a.PutAssociation(ctx, Association{Medium: "email", Address: addr, MXID: "@lat:hs",
				NotAfter: 1 << 41, LookupHash: realHash("email", addr, "pepper1")}))
			for {
				var got MXIDs
				ok := b.ix.lookupPairs([]ThreePID{{"email", addr}}, 1, &got)
				if ok && got.List[0] == "@lat:hs" {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatal("write not visible in the other instance after 5s")
				}
				time.Sleep(100 * time.Microsecond)
			}
			worst = max(worst, time.Since(start))
		}
		t.Logf("10 writes through one Store each reached the other's index within %v (write included)", worst)
	})
	for _, w := range indexWrites(as) {
		t.Run(w.name, func(t *testing.T) {
			w.do(t, a)
			eventually(t)
		})
	}
	if backend == DialectSQLite {
		// b's own writes do not make it reload, and a sees them.
		loads := b.IndexStats().Loads
		must(t, b.PutAssociation(ctx, Association{Medium: "email", Address: "new@example.org", MXID: "@b:hs",
			NotAfter: 1 << 41, LookupHash: realHash("email", "new@example.org", "pepper2")}))
		time.Sleep(5 * pollInterval)
		if st := b.IndexStats(); st.Loads != loads {
			t.Errorf("b reloaded after its own write: %+v", st)
		}
		got, err := a.LookupThreePIDs(ctx, []ThreePID{{"email", "new@example.org"}}, 1)
		must(t, err)
		if got[0] != "@b:hs" {
			t.Errorf("a sees %q after b's write", got[0])
		}
		return
	}
	if st := b.IndexStats(); st.Loads != 1 {
		t.Errorf("b reloaded without cause: %+v", st)
	}

	t.Run("reconnect", func(t *testing.T) {
		pid := b.ix.listenPID.Load()
		must(t, a.db.Exec("SELECT pg_terminate_backend(?)", pid).Error)
		// A write while b is (re)loading.
		must(t, a.PutAssociation(ctx, Association{Medium: "email", Address: "new@example.org", MXID: "@after:hs",
			NotAfter: 1 << 41, LookupHash: realHash("email", "new@example.org", "pepper2")}))
		deadline := time.Now().Add(10 * time.Second)
		for b.IndexStats().Loads < 2 || b.ix.listenPID.Load() == pid {
			if time.Now().After(deadline) {
				t.Fatalf("no reload after the listener was killed: %+v", b.IndexStats())
			}
			time.Sleep(10 * time.Millisecond)
		}
		eventually(t)
	})
}

// TestIndexTable drives the table through growth, reuse and compaction
// against a map.
func TestIndexTable(t *testing.T) {
	// Few enough interned windows and servers that some entries keep
	// their own.
	defer func(w, s int) { ixMaxWindows, ixMaxServers = w, s }(ixMaxWindows, ixMaxServers)
	ixMaxWindows, ixMaxServers = 50, 20
	tab, err := newTable(0)
	must(t, err)
	defer tab.release()
	type val struct {
		h      hkey
		mxid   string
		nb, na int64
	}
	model := map[akey]val{}
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(i int) akey { return addrKey("email", strconv.Itoa(i)) }
	check := func() {
		t.Helper()
		if tab.live != len(model) {
			t.Fatalf("live %d, model %d", tab.live, len(model))
		}
		for a, v := range model {
			idx := tab.byAddr(&a)
			if idx < 0 {
				t.Fatalf("%x missing", a)
			}
			e := &tab.ents[idx]
			nb, na := tab.window(e)
			if e.h != v.h || string(tab.mxid(e)) != v.mxid || nb != v.nb || na != min(v.na, ixMaxMS) || !tab.mxidIs(e, []byte(v.mxid)) {
				t.Fatalf("%x: %x %q %d %d, want %+v", a, e.h, tab.mxid(e), nb, na, v)
			}
			if got := tab.byHash(&v.h, v.nb); got != e {
				t.Fatalf("byHash(%x) = %p, want %p", v.h, got, e)
			}
			if got := tab.byHash(&v.h, v.nb-1); got != nil {
				t.Fatalf("byHash before not_before found an entry")
			}
		}
	}
	const keys = 20000
	for op := range 200000 {
		i := rng.IntN(keys)
		a := key(i)
		switch r := rng.IntN(10); {
		case r < 6:
			mxid := "@" + strings.Repeat("m", rng.IntN(40))
			switch rng.IntN(4) {
			case 0: // no server part
			case 1:
				mxid += ":"
			default:
				mxid += fmt.Sprintf(":hs%d.example:%d", rng.IntN(40), rng.IntN(3))
			}
			v := val{h: hashKey(fmt.Sprint(i, ":", rng.Int())), mxid: mxid, nb: int64(rng.IntN(100)) - 50, na: 1000 + int64(rng.IntN(3))}
			if rng.IntN(50) == 0 { // beyond int48 (clamped, same answers)
				v.na = math.MaxInt64
			}
			if r == 0 { // same hash as before
				if old, ok := model[a]; ok {
					v.h = old.h
				}
			}
			must(t, tab.upsert(&a, &v.h, []byte(v.mxid), v.nb, v.na))
			model[a] = v
		case r < 9:
			tab.remove(&a)
			delete(model, a)
		default:
			h := hashKey(fmt.Sprint(i, ":re", rng.Int()))
			tab.setHash(&a, &h)
			if v, ok := model[a]; ok {
				v.h = h
				model[a] = v
			}
		}
		if op%20000 == 0 {
			check()
		}
	}
	check()
	for a := range model {
		tab.remove(&a)
	}
	if tab.live != 0 {
		t.Fatalf("live %d after removing everything", tab.live)
	}
	for i, v := range tab.hs {
		if v != 0 || tab.as[i] != 0 {
			t.Fatalf("slot %d not empty", i)
		}
	}
}

func TestAddrKey(t *testing.T) {
	keys := map[akey]ThreePID{}
	for _, p := range []ThreePID{
		{"email", "a@b"}, {"emai", "la@b"}, {"email\x00", "a@b"}, {"email", "\x00a@b"},
		{"", "emaila@b"}, {"email\x00a@b", ""}, {"msisdn", "a@b"},
	} {
		k := addrKey(p.Medium, p.Address)
		if q, ok := keys[k]; ok {
			t.Errorf("%q and %q share a key", p, q)
		}
		keys[k] = p
		if addrKey([]byte(p.Medium), []byte(p.Address)) != k {
			t.Errorf("%q: string and []byte keys differ", p)
		}
	}
}

func TestHashKey(t *testing.T) {
	h := realHash("email", "a@b", "p")
	sum := sha256.Sum256([]byte("a@b email p"))
	if hashKey(h) != hkey(sum[:]) || hashKey([]byte(h)) != hkey(sum[:]) {
		t.Error("a sha256 lookup hash is not keyed by its digest")
	}
	for _, odd := range []string{"", "x", h + "=", h[:42], strings.ToUpper(h), h[:42] + "_"} {
		if odd != h && hashKey(odd) == hkey(sum[:]) {
			t.Errorf("%q keyed like %q", odd, h)
		}
	}
}

// TestHashKeyMatchesStrictBase64: hashKey's decoding agrees with
// encoding/base64's strict base64url on every 43-character string, which
// is what it replaced.
func TestHashKeyMatchesStrictBase64(t *testing.T) {
	strict := base64.RawURLEncoding.Strict()
	ref := func(h string) (hkey, bool) {
		var sum [32]byte
		n, err := strict.Decode(sum[:], []byte(h))
		return hkey(sum[:12]), err == nil && n == 32
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var cases []string
	for range 20000 {
		b := make([]byte, 43)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
		// One byte changed to anything: +, /, =, \n, \r, NUL, non-ASCII...
		b[rng.IntN(43)] = byte(rng.IntN(256))
		cases = append(cases, string(b))
	}
	h := realHash("email", "a@b", "p")
	cases = append(cases, h, h[:42]+"B", h[:42]+"\n", "\n"+h[1:], h[:20]+"="+h[21:])
	for _, c := range cases {
		want, canonical := ref(c)
		if canonicalDigest(c) != canonical {
			t.Fatalf("%q: canonical %v, encoding/base64 says %v", c, !canonical, canonical)
		}
		if canonical && (hashKey(c) != want || hashKey([]byte(c)) != want) {
			t.Fatalf("%q: key %x, want %x", c, hashKey(c), want)
		}
	}
}

// ---------------------------------------------------------------- benchmark

// BenchmarkIndexLookupHashes looks up 1,000 hashes (3 in 4 bound) among
// 1,000,000 SQLite rows. It reports the seeding time, the load time of a
// freshly opened store and the memory after the load.
func BenchmarkIndexLookupHashes(b *testing.B) {
	const rows = 1_000_000
	ctx := context.Background()
	mk := func(i int) Association {
		addr := fmt.Sprintf("user%d@load.test", i)
		return Association{Medium: "email", Address: addr, MXID: fmt.Sprintf("@user%d:load.test", i),
			TS: 1, NotBefore: 1, NotAfter: 1 << 50, Signed: []byte(`{"address":"` + addr + `"}`),
			LookupHash: realHash("email", addr, "pepper")}
	}
	// SIGIL_BENCH_INDEX_DB keeps the seeded database between runs.
	path := os.Getenv("SIGIL_BENCH_INDEX_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "index.db")
	}
	seed, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	var have int64
	must(b, seed.db.Model(&Association{}).Count(&have).Error)
	start := time.Now()
	for lo := int(have); lo < rows; lo += 100_000 {
		as := make([]Association, min(100_000, rows-lo))
		for i := range as {
			as[i] = mk(lo + i)
		}
		if err := seed.InsertAssociations(ctx, as); err != nil {
			b.Fatal(err)
		}
	}
	seedTime := time.Since(start)
	must(b, seed.Close())

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	s, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	openTime := time.Since(start)
	waitIndex(b, s)
	loadTime := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	st := s.IndexStats()
	b.Logf("seeded %d rows in %v; Open returned in %v, index loaded after %v (load %v)", rows, seedTime, openTime, loadTime, st.LoadTime)
	b.Logf("index %d entries, %.1f MB outside the heap; Go heap %.1f MB after the load (%.1f MB before); %s",
		st.Entries, float64(st.Bytes)/1e6, float64(after.HeapAlloc)/1e6, float64(before.HeapAlloc)/1e6, procRSS())

	// 256 batches of 1,000 random addresses, 3 in 4 bound, so that the
	// caches are as cold as under real traffic.
	const sets = 256
	rng := rand.New(rand.NewPCG(7, 7))
	var (
		hashSets [sets][]string
		pairSets [sets][]ThreePID
		bound    [sets]int // distinct bound addresses
	)
	for j := range sets {
		seen := map[int]bool{}
		for i := range 1000 {
			n := rng.IntN(rows)
			if i%4 == 3 {
				n += rows
			} else if !seen[n] {
				seen[n] = true
				bound[j]++
			}
			a := mk(n)
			hashSets[j] = append(hashSets[j], a.LookupHash)
			pairSets[j] = append(pairSets[j], ThreePID{a.Medium, a.Address})
		}
	}
	hashes := hashSets[0]
	report := func(b *testing.B) {
		b.ReportMetric(seedTime.Seconds(), "seed-s")
		b.ReportMetric(loadTime.Seconds(), "load-s")
		b.ReportMetric(float64(st.Bytes)/1e6, "index-MB")
		b.ReportMetric(float64(after.HeapAlloc)/1e6, "heap-MB")
	}
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			got, err := s.LookupHashes(ctx, hashSets[i%sets], 2)
			if err != nil || len(got) != bound[i%sets] {
				b.Fatalf("got %d, %v", len(got), err)
			}
			i++
		}
		report(b)
	})
	b.Run("index_threepids", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.LookupThreePIDs(ctx, pairSets[i%sets], 2); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("load", func(b *testing.B) { // the load's scan alone, for profiles
		for b.Loop() {
			t, err := s.ix.scanAll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			t.release()
		}
	})
	b.Run("database", func(b *testing.B) {
		db := dbOnly(s)
		for b.Loop() {
			got, err := db.LookupHashes(ctx, hashes, 2)
			if err != nil || len(got) != bound[0] {
				b.Fatalf("got %d, %v", len(got), err)
			}
		}
	})
	for _, c := range []struct {
		name  string
		s     *Store
		i     int
		found bool
	}{
		{"signed_bound", s, 4242, true},
		{"signed_unbound", s, rows + 1, false},
		{"signed_unbound_database", dbOnly(s), rows + 1, false},
		{"association_bound_gorm", nil, 4242, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			a := mk(c.i)
			for b.Loop() {
				var err error
				if c.s == nil {
					_, err = s.Association(ctx, a.Medium, a.Address, 2)
				} else {
					_, err = c.s.SignedAssociation(ctx, a.Medium, a.Address, 2)
				}
				if (err == nil) != c.found {
					b.Fatal(err)
				}
			}
		})
	}
}

// procRSS describes this process's resident memory (Linux only).
func procRSS() string {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	var out []string
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	if rollup, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
		for _, line := range strings.Split(string(rollup), "\n") {
			if strings.HasPrefix(line, "AnonHugePages:") {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// TestMXIDsReused: answers into a used MXIDs hold only this lookup's
// MXIDs, from the index and from the database alike, each hash found
// answered once.
func TestMXIDsReused(t *testing.T) {
	ctx := context.Background()
	dsn := freshDSN(t, "sqlite")
	indexed := openT(t, dsn)
	as := []Association{
		{Medium: "email", Address: "a@example.org", MXID: "@a:hs", NotAfter: 1 << 41, LookupHash: realHash("email", "a@example.org", "p")},
		{Medium: "email", Address: "b@example.org", MXID: "@bee:hs", NotAfter: 1 << 41, LookupHash: realHash("email", "b@example.org", "p")},
	}
	must(t, indexed.InsertAssociations(ctx, as))
	waitIndex(t, indexed)
	fromDB, err := Open(ctx, dsn, WithoutLookupIndex())
	must(t, err)
	t.Cleanup(func() { _ = fromDB.Close() })
	for name, s := range map[string]*Store{"index": indexed, "database": fromDB} {
		t.Run(name, func(t *testing.T) {
			var m MXIDs
			rounds := []struct {
				pairs []ThreePID
				want  []string
			}{
				{[]ThreePID{{"email", "a@example.org"}, {"email", "b@example.org"}}, []string{"@a:hs", "@bee:hs"}},
				{[]ThreePID{{"email", "none@example.org"}, {"email", "a@example.org"}}, []string{"", "@a:hs"}},
				{[]ThreePID{{"email", "none@example.org"}}, []string{""}},
			}
			for i, r := range rounds {
				must(t, s.LookupThreePIDsInto(ctx, r.pairs, 1, &m))
				if !slices.Equal(m.List, r.want) {
					t.Errorf("round %d: %q, want %q", i, m.List, r.want)
				}
			}
			// Hashes, into the same MXIDs: a repeated hash is answered
			// once, at its first place.
			ha, hb := as[0].LookupHash, as[1].LookupHash
			hashRounds := []struct {
				hashes []string
				want   []string
			}{
				{[]string{hb, ha, "nope", hb, ha, hb}, []string{"@bee:hs", "@a:hs", "", "", "", ""}},
				{[]string{"nope", ha}, []string{"", "@a:hs"}},
				{[]string{ha, ha}, []string{"@a:hs", ""}},
			}
			for i, r := range hashRounds {
				must(t, s.LookupHashesInto(ctx, r.hashes, 1, &m))
				if !slices.Equal(m.List, r.want) {
					t.Errorf("hash round %d: %q, want %q", i, m.List, r.want)
				}
			}
		})
	}
}
