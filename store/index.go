package store

// The lookup index: an in-memory copy of what lookups need from the
// associations table, so that the hot lookup paths never touch the database.
//
// Per binding it holds the lookup hash (192 bits of the digest it encodes),
// a 16-byte key of (medium, address), the validity window and the MXID:
// a 64-byte entry, 16 bytes of slots and the MXID bytes, about 100 bytes a
// binding, kept outside the Go heap (see allocIndex). Two
// open-addressing tables map lookup hashes and (medium, address) keys to
// entries, so a v2 sha256 lookup, a bulk_lookup and the "is it bound?" check
// of a v1 lookup are a few memory reads per address. Address lookups use
// their own key, not the lookup hash under the current pepper, so they stay
// exact while a pepper rotation is half done or another instance still has
// the old pepper cached.
//
// Loading: Open starts a goroutine that streams the table into a private
// index; until it is published every lookup goes to the database as
// before, so the server is ready at once. Writes that commit while the load
// runs are remembered (as keys or id ranges) and re-read from the database
// before the index is published.
//
// Coherence: every association write of this Store commits while holding
// the index writer lock (lookupIndex.wmu) and then applies its change, so
// the index follows the database in commit order. On PostgreSQL each write
// transaction also sends pg_notify on a channel private to the database and
// schema; a listener goroutine with its own connection re-reads the rows
// other instances changed. When that connection drops notifications may
// have been missed, so the index is dropped (lookups go to the database)
// and reloaded once the listener is back. SQLite has no NOTIFY; there each
// write transaction bumps a counter that a poller compares once a second,
// so writes by another process (say, "sigil rotate-pepper") make the
// index reload.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dchest/siphash"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// ---------------------------------------------------------------- keys

// hashKey is the index key of a lookup hash: the SHA-256 digest it encodes,
// of which the index keeps 192 bits (so that an entry fills one cache
// line; 192 bits cannot collide by chance, and a client that sends a hash
// matching a stored one in 24 bytes but not 32 must already know it). A
// string that is not the canonical unpadded base64url form of 32 bytes
// cannot come from the sha256 algorithm; it is keyed by a domain-separated
// SHA-256 of itself instead, so the index still answers exactly as the
// database does.
func hashKey[S string | []byte](h S) (k hkey) {
	if len(h) == 43 && canonicalDigest(h) {
		// The key's 12 bytes are the first 16 characters.
		for i := range 4 {
			v := uint32(b64URL[h[4*i]])<<18 | uint32(b64URL[h[4*i+1]])<<12 |
				uint32(b64URL[h[4*i+2]])<<6 | uint32(b64URL[h[4*i+3]])
			k[3*i], k[3*i+1], k[3*i+2] = byte(v>>16), byte(v>>8), byte(v)
		}
		return k
	}
	buf := make([]byte, 0, len(h)+16)
	buf = append(buf, "\x00sigil-hash\x00"...)
	buf = append(buf, h...)
	sum := sha256.Sum256(buf)
	return hkey(sum[:12])
}

// hkey is a lookup hash's key in the index: the first 96 bits of the
// digest. The pepper is public, so anyone can compute lookup hashes; but
// to make the index answer for a hash that is not a stored one, a client
// must find one that matches a stored digest in these 96 bits and not in
// the other 160: about 2^96 / N SHA-256 computations (2^76 at a million
// bindings), and what it would get is an MXID for an address it does not
// have.
type hkey = [12]byte

// canonicalDigest reports whether h, 43 characters, is the unpadded
// base64url form of 32 bytes as encoders write it (what
// base64.RawURLEncoding.Strict decodes to 32 bytes): only the alphabet, and
// the last character's 2 unused bits zero. Decoding all 43 characters with
// encoding/base64 to keep 16 of them was an eighth of a v2 lookup.
// TestHashKeyMatchesStrictBase64.
func canonicalDigest[S string | []byte](h S) bool {
	var or byte
	for i := range 43 {
		or |= b64URL[h[i]]
	}
	return or&^63 == 0 && b64URL[h[42]]&3 == 0
}

// b64URL maps the base64url alphabet to its values, and every other byte
// to 0xFF.
var b64URL = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = byte(i)
	}
	return t
}()

// addrKey is the index key of a 3PID: SipHash-2-4-128 of the address under
// a key derived for its medium from addrSecret. The index keeps no
// addresses, so keys must not collide: SipHash is a PRF, so without the
// process's random secret no one can aim for a collision, 128 bits make an
// accidental one negligible, and each medium has its own key, so ("email",
// x) and ("msisdn", x) are unrelated. It replaced SHA-256 of the pair,
// which cost four times as much and was the largest item of a
// bulk_lookup's profile; the keys never leave the process, so a
// per-process secret is enough.
//
// The index keeps 96 of the 128 bits (akey): the chance that an address
// never bound shares its key with one of N bound ones is N / 2^96 per
// look-up (10^-22 at a million bindings), and without the secret no one
// can do better than chance.
func addrKey[S string | []byte](medium, address S) (k akey) {
	k0, k1 := mediumKey(medium)
	lo, hi := siphash.Hash128(k0, k1, bytesOf(address))
	binary.LittleEndian.PutUint64(k[:8], lo)
	binary.LittleEndian.PutUint32(k[8:], uint32(hi))
	return k
}

// akey is an address key in the index.
type akey = [12]byte

// mediumKey is the SipHash key of a medium's address keys.
func mediumKey[S string | []byte](medium S) (k0, k1 uint64) {
	switch string(medium) { // no allocation: the compiler compares in place
	case "email":
		return emailKey[0], emailKey[1]
	case "msisdn":
		return msisdnKey[0], msisdnKey[1]
	}
	return deriveKey(bytesOf(medium))
}

// bytesOf views s as bytes without copying; they must not be modified.
func bytesOf[S string | []byte](s S) []byte {
	switch v := any(s).(type) {
	case string:
		return unsafe.Slice(unsafe.StringData(v), len(v))
	case []byte:
		return v
	}
	panic("unreachable")
}

// deriveKey derives the key of a medium from addrSecret.
func deriveKey(medium []byte) (k0, k1 uint64) {
	return siphash.Hash128(addrSecret[0], addrSecret[1], append([]byte("sigil address key\x00"), medium...))
}

var (
	// addrSecret is the root of addrKey's keys, random per process.
	addrSecret = func() (k [2]uint64) {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		return [2]uint64{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
	}()
	emailKey  = keyPair(deriveKey([]byte("email")))
	msisdnKey = keyPair(deriveKey([]byte("msisdn")))
)

func keyPair(k0, k1 uint64) [2]uint64 { return [2]uint64{k0, k1} }

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// ---------------------------------------------------------------- table

// ixEntry is one binding, 36 bytes. Entries are plain data: the table
// lives outside the Go heap. With the two slot tables (4 bytes each at a
// load of 3/4 to 7/8) and the MXID record (its localpart, a byte or two
// of length and of server number: see putMXID), a binding costs about 60
// bytes, so 10M bindings fit in 1 GB with room to spare.
type ixEntry struct {
	h   hkey    // hashKey(lookup_hash)
	a   akey    // addrKey(medium, address)
	nb  [6]byte // not_before, Unix ms, as a signed 48-bit number (clamped)
	win uint16  // not_after - not_before: an index into windows, or ixOddWindow
	off uint32  // the MXID record is at arena[off:]; ixFree for an unused entry
}

const (
	ixFree     = ^uint32(0)
	ixMinSlots = 1024
	ixGolden   = 0x9E3779B97F4A7C15
	// A slot is the entry number + 1 in its low ixIdxBits bits and a tag
	// of the key in the others: a probe reads an entry (a cache miss at
	// 1M bindings) only when the tag matches, so a table kept 3/4 full
	// costs misses no more than a half-empty one without tags.
	ixIdxBits   = 25
	ixIdxMask   = 1<<ixIdxBits - 1
	ixMaxEntry  = ixIdxMask - 1
	ixOddWindow = ^uint16(0)
	// int48 bounds: a not_before or not_after outside them is clamped,
	// which changes no answer for any time between them (years ±4,000).
	ixMaxMS = 1<<47 - 1
	ixMinMS = -(1 << 47)
)

// ixTable is the index proper. It is not safe for concurrent use: see
// lookupIndex for the locking.
type ixTable struct {
	ents    []ixEntry // capacity; ents[:used] have been handed out
	used    int
	free    []uint32 // unused entries below used
	live    int
	hs, as  []uint32 // slots by lookup hash and by address: tag | entry+1, 0 = empty
	size    uint64   // slots per table (any number: see home)
	seed    uint64
	arena   []byte // MXID records
	alen    int
	garbage int // arena bytes no entry refers to

	// The few distinct validity windows (not_after - not_before: every
	// binding signed with the same lifetime shares one), and the servers
	// of the MXIDs, each stored once. Both are small and on the Go heap.
	windows  []int64
	windowID map[int64]uint16
	odd      map[akey]int64 // not_after of entries whose window is not in windows
	servers  []string
	serverID map[string]uint64
}

// Bounds of the interned tables: past them, entries keep their value
// themselves (a window in odd, a server in the MXID record). Variables
// for the tests.
var (
	ixMaxWindows = 1 << 15
	ixMaxServers = 1 << 16
)

func newTable(n int) (*ixTable, error) {
	t := &ixTable{seed: mrand.Uint64(), windowID: map[int64]uint16{}, odd: map[akey]int64{}, serverID: map[string]uint64{}}
	if n > ixMaxEntry {
		return nil, fmt.Errorf("store: lookup index: %d bindings exceed its %d", n, ixMaxEntry)
	}
	if err := t.allocSlots(max(ixMinSlots, n+n/3+1)); err != nil {
		return nil, err
	}
	var err error
	// Spare capacity costs address space, not memory: untouched pages
	// are never resident.
	if t.ents, err = allocIndex[ixEntry](min(n+n/2+1024, ixMaxEntry)); err != nil {
		t.release()
		return nil, err
	}
	if t.arena, err = allocIndex[byte](max(n*24, 64<<10)); err != nil {
		t.release()
		return nil, err
	}
	return t, nil
}

func (t *ixTable) allocSlots(n int) error {
	hs, err := allocIndex[uint32](n)
	if err != nil {
		return err
	}
	as, err := allocIndex[uint32](n)
	if err != nil {
		freeIndex(hs)
		return err
	}
	t.hs, t.as = hs, as
	t.size = uint64(n)
	return nil
}

// release frees the table's memory; t must not be used afterwards.
func (t *ixTable) release() {
	freeIndex(t.ents)
	freeIndex(t.hs)
	freeIndex(t.as)
	freeIndex(t.arena)
	*t = ixTable{}
}

// bytes is the memory the table holds (its resident size once loaded).
func (t *ixTable) bytes() int64 {
	return int64(t.used)*int64(unsafe.Sizeof(ixEntry{})) + int64(len(t.hs)+len(t.as))*4 + int64(t.alen)
}

// home is key k's first slot: the high 32 bits of a multiplicative hash,
// scaled to the table's size (so the size need not be a power of two, and
// the tables stay 3/4 full rather than between 3/8 and 3/4).
func (t *ixTable) home(k uint64) uint64 {
	return (((k ^ t.seed) * ixGolden) >> 32) * t.size >> 32
}

func (t *ixTable) next(i uint64) uint64 {
	if i++; i == t.size {
		return 0
	}
	return i
}

// tag is the slot tag of key k (bits home hardly depends on).
func tag(k uint64) uint32 { return uint32(k) << ixIdxBits }

func slotOf(k uint64, idx int) uint32 { return tag(k) | uint32(idx+1) }

// ---- entries' fields

func getMS(b *[6]byte) int64 {
	v := int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16 | int64(b[3])<<24 | int64(b[4])<<32 | int64(b[5])<<40
	return v << 16 >> 16 // sign-extend 48 bits
}

func putMS(b *[6]byte, v int64) {
	v = min(max(v, ixMinMS), ixMaxMS)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}

// window returns e's not_before and not_after.
func (t *ixTable) window(e *ixEntry) (nb, na int64) {
	nb = getMS(&e.nb)
	if e.win == ixOddWindow {
		return nb, t.odd[e.a]
	}
	return nb, nb + t.windows[e.win]
}

// valid reports whether e's binding is valid at now.
func (t *ixTable) valid(e *ixEntry, now int64) bool {
	nb, na := t.window(e)
	return nb <= now && now <= na
}

// setWindow stores not_before and not_after in e, whose a is set.
func (t *ixTable) setWindow(e *ixEntry, nb, na int64) {
	nb, na = min(max(nb, ixMinMS), ixMaxMS), min(max(na, ixMinMS), ixMaxMS)
	putMS(&e.nb, nb)
	if e.win == ixOddWindow {
		delete(t.odd, e.a)
	}
	d := na - nb
	id, ok := t.windowID[d]
	if !ok && len(t.windows) < ixMaxWindows {
		id, ok = uint16(len(t.windows)), true
		t.windows = append(t.windows, d)
		t.windowID[d] = id
	}
	if !ok {
		e.win = ixOddWindow
		t.odd[e.a] = na
		return
	}
	e.win = id
}

// ---- MXID records: uvarint(n) · n bytes · uvarint(server). server 0: the
// n bytes are the whole MXID; otherwise they are the part before the first
// colon and the rest is ":" + servers[server-1], stored once for all its
// users.

// record decodes the MXID record at off.
func (t *ixTable) record(off uint32) (local []byte, server uint64, size int) {
	b := t.arena[off:]
	n, k := binary.Uvarint(b)
	local = b[k : k+int(n)]
	server, k2 := binary.Uvarint(b[k+int(n):])
	return local, server, k + int(n) + k2
}

// mxidLen is the length of e's MXID.
func (t *ixTable) mxidLen(e *ixEntry) int {
	local, server, _ := t.record(e.off)
	if server == 0 {
		return len(local)
	}
	return len(local) + 1 + len(t.servers[server-1])
}

// appendMXID appends e's MXID to dst.
func (t *ixTable) appendMXID(dst []byte, e *ixEntry) []byte {
	local, server, _ := t.record(e.off)
	dst = append(dst, local...)
	if server != 0 {
		dst = append(dst, ':')
		dst = append(dst, t.servers[server-1]...)
	}
	return dst
}

// mxid is e's MXID, in a new slice.
func (t *ixTable) mxid(e *ixEntry) []byte { return t.appendMXID(nil, e) }

// mxidIs reports whether e's MXID is m, without allocating.
func (t *ixTable) mxidIs(e *ixEntry, m []byte) bool {
	local, server, _ := t.record(e.off)
	if server == 0 {
		return bytes.Equal(local, m)
	}
	srv := t.servers[server-1]
	return len(m) == len(local)+1+len(srv) && bytes.Equal(m[:len(local)], local) &&
		m[len(local)] == ':' && string(m[len(local)+1:]) == srv
}

// encodeMXID appends m's record to dst.
func (t *ixTable) encodeMXID(dst, m []byte) []byte {
	local, server := m, uint64(0)
	if i := bytes.IndexByte(m, ':'); i >= 0 {
		srv := m[i+1:]
		id, ok := t.serverID[string(srv)] // no allocation for the look-up
		if !ok && len(t.servers) < ixMaxServers {
			t.servers = append(t.servers, string(srv))
			id, ok = uint64(len(t.servers)), true
			t.serverID[t.servers[id-1]] = id
		}
		if ok {
			local, server = m[:i], id
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(local)))
	dst = append(dst, local...)
	return binary.AppendUvarint(dst, server)
}

// putMXID appends m's record to the arena, compacting or growing it when
// full.
func (t *ixTable) putMXID(m []byte) (uint32, error) {
	var buf [64]byte
	rec := t.encodeMXID(buf[:0], m)
	if t.alen+len(rec) > len(t.arena) {
		if err := t.compact(len(rec)); err != nil {
			return 0, err
		}
	}
	off := t.alen
	t.alen += copy(t.arena[off:], rec)
	return uint32(off), nil
}

// compact copies the live MXID records into a new arena with room for
// need more bytes (and a quarter to spare).
func (t *ixTable) compact(need int) error {
	want := t.alen - t.garbage + need
	size := max(len(t.arena), 64<<10)
	for size < want+want/4 {
		size *= 2
	}
	if size >= math.MaxUint32 {
		return errors.New("store: lookup index: MXIDs exceed 4 GiB")
	}
	arena, err := allocIndex[byte](size)
	if err != nil {
		return err
	}
	n := 0
	for i := range t.used {
		if e := &t.ents[i]; e.off != ixFree {
			_, _, sz := t.record(e.off)
			copy(arena[n:], t.arena[e.off:int(e.off)+sz])
			e.off = uint32(n)
			n += sz
		}
	}
	freeIndex(t.arena)
	t.arena, t.alen, t.garbage = arena, n, 0
	return nil
}

func (t *ixTable) recordSize(e *ixEntry) int {
	_, _, sz := t.record(e.off)
	return sz
}

// ---- slots

// byHash returns an entry with lookup key h that is valid at now, or nil.
func (t *ixTable) byHash(h *hkey, now int64) *ixEntry {
	k := le64(h[:8])
	tg := tag(k)
	for i := t.home(k); ; i = t.next(i) {
		v := t.hs[i]
		if v == 0 {
			return nil
		}
		if v&^ixIdxMask == tg {
			if e := &t.ents[v&ixIdxMask-1]; e.h == *h && t.valid(e, now) {
				return e
			}
		}
	}
}

// byAddr returns the entry of address key a, or -1.
func (t *ixTable) byAddr(a *akey) int {
	k := le64(a[:8])
	tg := tag(k)
	for i := t.home(k); ; i = t.next(i) {
		v := t.as[i]
		if v == 0 {
			return -1
		}
		if v&^ixIdxMask == tg && t.ents[v&ixIdxMask-1].a == *a {
			return int(v&ixIdxMask - 1)
		}
	}
}

func (t *ixTable) insertSlot(tab []uint32, k uint64, idx int) {
	i := t.home(k)
	for tab[i] != 0 {
		i = t.next(i)
	}
	tab[i] = slotOf(k, idx)
}

// removeSlot removes entry idx, whose key is k, from tab (byHash selects
// which key the other entries are placed by) with backward-shift deletion,
// so that linear probing needs no tombstones.
func (t *ixTable) removeSlot(tab []uint32, byHash bool, k uint64, idx int) {
	v := uint32(idx + 1)
	i := t.home(k)
	for tab[i]&ixIdxMask != v {
		if tab[i] == 0 {
			return
		}
		i = t.next(i)
	}
	dist := func(from, to uint64) uint64 { // probe steps from from to to
		if to >= from {
			return to - from
		}
		return to + t.size - from
	}
	for j := i; ; {
		j = t.next(j)
		w := tab[j]
		if w == 0 {
			break
		}
		e := &t.ents[w&ixIdxMask-1]
		var h uint64
		if byHash {
			h = t.home(le64(e.h[:8]))
		} else {
			h = t.home(le64(e.a[:8]))
		}
		// w may fill the hole at i if i lies on its probe path from h to j.
		if dist(h, j) >= dist(i, j) {
			tab[i] = w
			i = j
		}
	}
	tab[i] = 0
}

// growSlots rebuilds both slot tables 3/5 full, with every entry.
func (t *ixTable) growSlots() error {
	oldH, oldA := t.hs, t.as
	if err := t.allocSlots(max(ixMinSlots, (t.live+1)*5/3+1)); err != nil {
		return err
	}
	for i := range t.used {
		if e := &t.ents[i]; e.off != ixFree {
			t.insertSlot(t.hs, le64(e.h[:8]), i)
			t.insertSlot(t.as, le64(e.a[:8]), i)
		}
	}
	freeIndex(oldH)
	freeIndex(oldA)
	return nil
}

func (t *ixTable) newEntry() (int, error) {
	if n := len(t.free); n > 0 {
		idx := t.free[n-1]
		t.free = t.free[:n-1]
		return int(idx), nil
	}
	if t.used == len(t.ents) {
		if t.used >= ixMaxEntry {
			return 0, errors.New("store: lookup index: too many entries")
		}
		ents, err := allocIndex[ixEntry](min(2*len(t.ents), ixMaxEntry))
		if err != nil {
			return 0, err
		}
		copy(ents, t.ents[:t.used])
		freeIndex(t.ents)
		t.ents = ents
	}
	t.used++
	return t.used - 1, nil
}

// upsert sets the binding of address key a.
func (t *ixTable) upsert(a *akey, h *hkey, mxid []byte, nb, na int64) error {
	if idx := t.byAddr(a); idx >= 0 {
		e := &t.ents[idx]
		if e.h != *h {
			t.removeSlot(t.hs, true, le64(e.h[:8]), idx)
			e.h = *h
			t.insertSlot(t.hs, le64(h[:8]), idx)
		}
		if !t.mxidIs(e, mxid) {
			old := t.recordSize(e)
			off, err := t.putMXID(mxid) // may move e's record, never e
			if err != nil {
				return err
			}
			t.garbage += old
			e.off = off
		}
		t.setWindow(e, nb, na)
		return nil
	}
	return t.insert(a, h, mxid, nb, na)
}

// insert adds a binding for address key a, which must not be indexed yet.
func (t *ixTable) insert(a *akey, h *hkey, mxid []byte, nb, na int64) error {
	if len(mxid) > 1<<20 {
		return errors.New("store: lookup index: MXID too long")
	}
	if t.live+1 > int(t.size/8*7) {
		if err := t.growSlots(); err != nil {
			return err
		}
	}
	off, err := t.putMXID(mxid)
	if err != nil {
		return err
	}
	idx, err := t.newEntry()
	if err != nil {
		return err
	}
	e := &t.ents[idx]
	*e = ixEntry{h: *h, a: *a, off: off}
	t.setWindow(e, nb, na)
	t.insertSlot(t.hs, le64(h[:8]), idx)
	t.insertSlot(t.as, le64(a[:8]), idx)
	t.live++
	return nil
}

// remove drops the binding of address key a, if any.
func (t *ixTable) remove(a *akey) {
	idx := t.byAddr(a)
	if idx < 0 {
		return
	}
	e := &t.ents[idx]
	t.removeSlot(t.hs, true, le64(e.h[:8]), idx)
	t.removeSlot(t.as, false, le64(e.a[:8]), idx)
	t.garbage += t.recordSize(e)
	if e.win == ixOddWindow {
		delete(t.odd, e.a)
	}
	*e = ixEntry{off: ixFree}
	t.free = append(t.free, uint32(idx))
	t.live--
}

// setHash changes the lookup key of address key a, if it is bound.
func (t *ixTable) setHash(a *akey, h *hkey) {
	idx := t.byAddr(a)
	if idx < 0 {
		return
	}
	if e := &t.ents[idx]; e.h != *h {
		t.removeSlot(t.hs, true, le64(e.h[:8]), idx)
		e.h = *h
		t.insertSlot(t.hs, le64(h[:8]), idx)
	}
}

// ---------------------------------------------------------------- changes

// ixRow is an association as the index sees it.
type ixRow struct {
	medium, address, mxid, hash string
	nb, na                      int64
}

// ixChange is what a committed write did to the associations table.
type ixChange struct {
	rows    []ixRow    // now have exactly these values
	deleted []ThreePID // no longer exist
	rehash  []ixRow    // lookup_hash changed (medium, address, hash set)
	lo, hi  uint64     // ids of rows and rehash, when known (0 = unknown)
	keys    []ThreePID // set by notifications: re-read these
	reload  bool       // set by notifications: re-read everything
}

func (c *ixChange) applyTo(t *ixTable) error {
	for i := range c.rows {
		r := &c.rows[i]
		a, h := addrKey(r.medium, r.address), hashKey(r.hash)
		if err := t.upsert(&a, &h, unsafe.Slice(unsafe.StringData(r.mxid), len(r.mxid)), r.nb, r.na); err != nil {
			return err
		}
	}
	for _, p := range c.deleted {
		a := addrKey(p.Medium, p.Address)
		t.remove(&a)
	}
	for i := range c.rehash {
		r := &c.rehash[i]
		a, h := addrKey(r.medium, r.address), hashKey(r.hash)
		t.setHash(&a, &h)
	}
	return nil
}

// ixPending is what changed while a load ran: re-read before publishing.
type ixPending struct {
	keys   map[ThreePID]struct{}
	ranges [][2]uint64
}

func (p *ixPending) add(c *ixChange) {
	if c.lo > 0 {
		p.ranges = append(p.ranges, [2]uint64{c.lo, c.hi})
		return
	}
	if p.keys == nil {
		p.keys = make(map[ThreePID]struct{})
	}
	for _, r := range c.rows {
		p.keys[ThreePID{r.medium, r.address}] = struct{}{}
	}
	for _, r := range c.rehash {
		p.keys[ThreePID{r.medium, r.address}] = struct{}{}
	}
	for _, k := range c.deleted {
		p.keys[k] = struct{}{}
	}
	for _, k := range c.keys {
		p.keys[k] = struct{}{}
	}
}

// mergedRanges returns the pending id ranges sorted, overlapping and
// adjacent ones merged.
func (p *ixPending) mergedRanges() [][2]uint64 {
	rs := slices.Clone(p.ranges)
	slices.SortFunc(rs, func(x, y [2]uint64) int {
		switch {
		case x[0] < y[0]:
			return -1
		case x[0] > y[0]:
			return 1
		}
		return 0
	})
	var out [][2]uint64
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// ---------------------------------------------------------------- index

// lookupIndex coordinates the table with the database. Lock order: wmu,
// then a database connection, then mu.
type lookupIndex struct {
	s *Store

	// mu guards tab, the table's contents and the statistics. Lookups
	// hold it shared; nil tab means "ask the database".
	mu       sync.RWMutex
	tab      *ixTable
	loadTime time.Duration
	loads    int

	// wmu serialises everything that changes the index: local writes
	// (held across their commit), notifications and load completion.
	wmu     sync.Mutex
	loading bool
	// catchingUp mirrors loading for IndexStats, which must not wait for
	// wmu (held across a write's commit, however long the database takes).
	catchingUp atomic.Bool
	gen        uint64
	pending    ixPending
	// loadErrs counts consecutive failed loads, for the retry back-off.
	loadErrs int

	// On SQLite other processes (say, "sigil rotate-pepper") may write
	// too, and there is no NOTIFY: every write transaction bumps a
	// counter in the settings table and a poller compares it with the
	// count this index has seen (version), reloading on a difference.
	versioned bool
	version   int64 // the counter as of the published (or loading) index
	bumpPrev  int64 // the counter before the current write's bump
	bumped    bool  // the current write bumped the counter
	stale     bool  // another process wrote while the index loaded

	channel   string        // PostgreSQL NOTIFY channel ("" on SQLite)
	listenPID atomic.Uint32 // backend of the LISTEN connection (for tests)
	instance  string        // this Store's id in notifications
	dsn       string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Hot one-row queries, prepared on first use (Store.prepared):
	// through GORM each cost more than the rest of its request.
	stmtMu  sync.Mutex
	signed  atomic.Pointer[sql.Stmt] // SignedAssociation's
	account atomic.Pointer[sql.Stmt] // AccountByTokenHash's
}

// startIndex starts loading the index (and, on PostgreSQL, listening for
// other instances' writes). It does not wait for the load. Without load
// the index holds nothing and runs nothing: lookups ask the database, and
// writes only notify the other processes (WithoutLookupIndex).
func (s *Store) startIndex(ctx context.Context, dsn string, load bool) error {
	var id [8]byte
	_, _ = rand.Read(id[:])
	ix := &lookupIndex{s: s, instance: hex.EncodeToString(id[:]), dsn: dsn}
	if s.dialect == DialectPostgres {
		var db, schema string
		if err := s.db.WithContext(ctx).Raw("SELECT current_database(), current_schema()").Row().Scan(&db, &schema); err != nil {
			return fmt.Errorf("store: lookup index: %w", err)
		}
		sum := sha256.Sum256([]byte(db + "\x00" + schema))
		ix.channel = "sigil_associations_" + hex.EncodeToString(sum[:8])
	}
	ix.ctx, ix.cancel = context.WithCancel(context.Background())
	s.ix = ix
	ix.versioned = ix.channel == ""
	if !load {
		return nil
	}
	if ix.channel != "" {
		ix.wg.Add(1)
		go ix.listen()
		return nil
	}
	ix.wmu.Lock()
	ix.spawnLoadLocked(ix.beginLoadLocked())
	ix.wmu.Unlock()
	ix.wg.Add(1)
	go ix.poll()
	return nil
}

// versionKey is the settings row counting association writes (SQLite).
const versionKey = "store.associations_version"

// readVersion returns the association write counter.
func (ix *lookupIndex) readVersion(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	err := ix.s.db.WithContext(ctx).Raw(`SELECT CAST(value AS INTEGER) FROM settings WHERE "key" = ?`, versionKey).Row().Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return v.Int64, nil
}

// pollInterval is how often a SQLite index looks for other processes'
// writes (a variable for tests).
var pollInterval = time.Second

// poll reloads the index when the write counter shows that another
// process changed the associations (SQLite).
func (ix *lookupIndex) poll() {
	defer ix.wg.Done()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ix.ctx.Done():
			return
		case <-tick.C:
		}
		ix.wmu.Lock()
		if !ix.loading && ix.tab != nil {
			v, err := ix.readVersion(ix.ctx)
			if err == nil && v != ix.version {
				ix.s.log.Info("store: lookup index: associations changed by another process; reloading")
				ix.reloadLocked()
			}
		}
		ix.wmu.Unlock()
	}
}

// stopIndex stops the goroutines and frees the index.
func (s *Store) stopIndex() {
	ix := s.ix
	if ix == nil {
		return
	}
	ix.cancel()
	ix.wg.Wait()
	ix.mu.Lock()
	if ix.tab != nil {
		ix.tab.release()
		ix.tab = nil
	}
	ix.mu.Unlock()
	ix.stmtMu.Lock()
	for _, slot := range []*atomic.Pointer[sql.Stmt]{&ix.signed, &ix.account} {
		if stmt := slot.Swap(nil); stmt != nil {
			_ = stmt.Close()
		}
	}
	ix.stmtMu.Unlock()
}

// IndexStats describes the in-memory lookup index.
type IndexStats struct {
	// Loaded is true while lookups are answered from memory.
	Loaded bool
	// Entries is the number of bindings indexed.
	Entries int
	// Bytes is the memory the index holds (outside the Go heap).
	Bytes int64
	// LoadTime is how long the last completed load took.
	LoadTime time.Duration
	// Loads counts completed loads (1 unless a reload was needed).
	Loads int
	// CatchingUp is true while a load runs: with Loaded, lookups are
	// answered from the previous index (say, while the database or the
	// PostgreSQL notification connection is being regained).
	CatchingUp bool
}

// IndexStats reports on the lookup index.
func (s *Store) IndexStats() IndexStats {
	ix := s.ix
	if ix == nil {
		return IndexStats{}
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	st := IndexStats{LoadTime: ix.loadTime, Loads: ix.loads, CatchingUp: ix.catchingUp.Load()}
	if t := ix.tab; t != nil {
		st.Loaded, st.Entries, st.Bytes = true, t.live, t.bytes()
	}
	return st
}

// WaitIndex blocks until the lookup index is loaded or ctx is done. Lookups
// never need to wait (they use the database meanwhile); this is for
// benchmarks, tests and start-up logging.
func (s *Store) WaitIndex(ctx context.Context) error {
	if s.ix == nil {
		return errors.New("store: no lookup index")
	}
	for {
		if s.IndexStats().Loaded {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// beginLoadLocked drops the index (lookups go to the database) and starts
// recording changes for a load that has yet to start reading. Holds wmu.
func (ix *lookupIndex) beginLoadLocked() uint64 {
	return ix.beginLoadKeepingLocked(false)
}

// beginLoadKeepingLocked is beginLoadLocked; with keep, the published
// index stays published (and up to date with this instance's writes)
// until the new load replaces it: after losing the LISTEN connection the
// database may be unreachable, and lookups are still answered from
// memory, missing at most other instances' writes until the load catches
// up. Holds wmu.
func (ix *lookupIndex) beginLoadKeepingLocked(keep bool) uint64 {
	ix.gen++
	ix.loading = true
	ix.catchingUp.Store(true)
	ix.pending = ixPending{}
	ix.mu.Lock()
	if ix.tab != nil && !keep {
		ix.tab.release()
		ix.tab = nil
	}
	ix.mu.Unlock()
	return ix.gen
}

// spawnLoadLocked starts the load of generation gen. Holds wmu.
func (ix *lookupIndex) spawnLoadLocked(gen uint64) {
	if ix.ctx.Err() != nil {
		return
	}
	ix.wg.Add(1)
	go func() {
		defer ix.wg.Done()
		ix.load(gen)
	}()
}

// reloadLocked throws the index away and loads it again. Holds wmu.
func (ix *lookupIndex) reloadLocked() {
	ix.spawnLoadLocked(ix.beginLoadLocked())
}

// load reads the whole table into a new index, then, holding wmu, re-reads
// what changed meanwhile and publishes the index unless a newer load has
// begun.
func (ix *lookupIndex) load(gen uint64) {
	ctx := ix.ctx
	if indexLoadHook != nil {
		indexLoadHook("start")
	}
	start := time.Now()
	var err error
	if ix.versioned {
		ix.wmu.Lock()
		ix.stale = false
		ix.version, err = ix.readVersion(ctx) // the scan sees at least this
		ix.wmu.Unlock()
	}
	var t *ixTable
	if err == nil {
		t, err = ix.scanAll(ctx)
	}
	if indexLoadHook != nil {
		indexLoadHook("scanned")
	}

	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	if ix.gen != gen || ctx.Err() != nil {
		if t != nil {
			t.release()
		}
		return
	}
	if err == nil {
		err = ix.applyPending(ctx, t)
	}
	if err == nil && ix.versioned {
		// Another process's write after the scan began is in neither the
		// scan nor pending: start again.
		var v int64
		if v, err = ix.readVersion(ctx); err == nil && (ix.stale || v != ix.version) {
			t.release()
			ix.s.log.Info("store: lookup index: associations changed by another process during the load; reloading")
			ix.reloadLocked()
			return
		}
	}
	if err != nil {
		if t != nil {
			t.release()
		}
		ix.loadErrs++
		wait := min(time.Duration(ix.loadErrs)*time.Second, time.Minute)
		ix.s.log.Error("store: lookup index: load failed; lookups use the database", "err", err, "retry_in", wait)
		ix.wg.Add(1)
		go func() {
			defer ix.wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			ix.wmu.Lock()
			defer ix.wmu.Unlock()
			if ix.gen == gen {
				ix.reloadLocked()
			}
		}()
		return
	}
	elapsed := time.Since(start)
	ix.loadErrs = 0
	ix.loading = false
	ix.catchingUp.Store(false)
	ix.pending = ixPending{}
	ix.mu.Lock()
	if ix.tab != nil { // kept while this load ran
		ix.tab.release()
	}
	ix.tab = t
	ix.loadTime = elapsed
	ix.loads++
	ix.mu.Unlock()
	ix.s.log.Info("store: lookup index loaded", "bindings", t.live, "bytes", t.bytes(), "elapsed", elapsed)
}

// indexLoadHook, when set (by tests), runs at the start of every load
// ("start") and after its scan ("scanned").
var indexLoadHook func(stage string)

const ixColumns = "medium, address, mxid, not_before, not_after, lookup_hash"

// scanRows runs a query selecting ixColumns and calls fn for each row. The
// byte slices are only valid during the call.
func (ix *lookupIndex) scanRows(ctx context.Context, fn func(medium, address, mxid, hash []byte, nb, na int64) error, query string, args ...any) error {
	qctx := ctx
	if ix.s.dialect == DialectSQLite {
		// go-sqlite3 starts a goroutine per row to watch a cancellable
		// context, which doubles the cost of a load: check ctx here
		// instead.
		qctx = context.WithoutCancel(ctx)
	}
	rows, err := ix.s.db.WithContext(qctx).Raw(query, args...).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		medium, address, mxid, hash sql.RawBytes
		nb, na                      int64
	)
	for n := 0; rows.Next(); n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := rows.Scan(&medium, &address, &mxid, &nb, &na, &hash); err != nil {
			return err
		}
		if err := fn(medium, address, mxid, hash, nb, na); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanAll builds a table from the whole associations table, streaming it.
func (ix *lookupIndex) scanAll(ctx context.Context) (*ixTable, error) {
	var n int64
	if err := ix.s.db.WithContext(ctx).Raw("SELECT COUNT(*) FROM associations").Row().Scan(&n); err != nil {
		return nil, err
	}
	t, err := newTable(int(n))
	if err != nil {
		return nil, err
	}
	err = ix.scanRows(ctx, func(medium, address, mxid, hash []byte, nb, na int64) error {
		a, h := addrKey(medium, address), hashKey(hash)
		return t.insert(&a, &h, mxid, nb, na) // (medium, address) is unique
	}, "SELECT "+ixColumns+" FROM associations")
	if err != nil {
		t.release()
		return nil, err
	}
	return t, nil
}

// applyPending re-reads into t what changed while it loaded. Holds wmu.
func (ix *lookupIndex) applyPending(ctx context.Context, t *ixTable) error {
	if err := ix.readRanges(ctx, ix.pending.mergedRanges(), t.upsert); err != nil {
		return err
	}
	keys := make([]ThreePID, 0, len(ix.pending.keys))
	for k := range ix.pending.keys {
		keys = append(keys, k)
	}
	return ix.readKeys(ctx, keys, t.upsert, t.remove)
}

// readRanges streams the rows with ids in ranges to upsert.
func (ix *lookupIndex) readRanges(ctx context.Context, ranges [][2]uint64, upsert func(a *akey, h *hkey, mxid []byte, nb, na int64) error) error {
	for _, r := range ranges {
		err := ix.scanRows(ctx, func(medium, address, mxid, hash []byte, nb, na int64) error {
			a, h := addrKey(medium, address), hashKey(hash)
			return upsert(&a, &h, mxid, nb, na)
		}, "SELECT "+ixColumns+" FROM associations WHERE id >= ? AND id <= ?", r[0], r[1])
		if err != nil {
			return err
		}
	}
	return nil
}

// readKeys re-reads keys: rows found go to upsert, keys without a row to
// remove.
func (ix *lookupIndex) readKeys(ctx context.Context, keys []ThreePID, upsert func(a *akey, h *hkey, mxid []byte, nb, na int64) error, remove func(a *akey)) error {
	byMedium := make(map[string][]string)
	for _, k := range keys {
		byMedium[k.Medium] = append(byMedium[k.Medium], k.Address)
	}
	for medium, addrs := range byMedium {
		for _, chunk := range chunks(addrs, chunkSize) {
			found := make(map[akey]bool, len(chunk))
			err := ix.scanRows(ctx, func(medium, address, mxid, hash []byte, nb, na int64) error {
				a, h := addrKey(medium, address), hashKey(hash)
				found[a] = true
				return upsert(&a, &h, mxid, nb, na)
			}, "SELECT "+ixColumns+" FROM associations WHERE medium = ? AND address IN ?", medium, chunk)
			if err != nil {
				return err
			}
			for _, addr := range chunk {
				if a := addrKey(medium, addr); !found[a] {
					remove(&a)
				}
			}
		}
	}
	return nil
}

// refreshKeys lists the keys whose rows a refresh of c must re-read (those
// not covered by its id range).
func (c *ixChange) refreshKeys() []ThreePID {
	keys := slices.Clone(c.keys)
	if c.lo == 0 {
		for _, r := range c.rows {
			keys = append(keys, ThreePID{r.medium, r.address})
		}
		for _, r := range c.rehash {
			keys = append(keys, ThreePID{r.medium, r.address})
		}
	}
	return append(keys, c.deleted...)
}

// ixOp is a change read from the database, to apply to the live table.
type ixOp struct {
	a      akey
	h      hkey
	mxid   string
	nb, na int64
	del    bool
}

// refreshLocked re-reads what c names from the database into the published
// index (a notification from another instance, or a local write whose
// outcome is unknown). On failure the index is reloaded. Holds wmu.
func (ix *lookupIndex) refreshLocked(c *ixChange) {
	if c.reload {
		ix.reloadLocked()
		return
	}
	if ix.loading {
		ix.pending.add(c)
		return
	}
	if ix.tab == nil { // closed
		return
	}
	// Read first, then apply holding mu, so that lookups never wait for
	// the database.
	var ops []ixOp
	upsert := func(a *akey, h *hkey, mxid []byte, nb, na int64) error {
		ops = append(ops, ixOp{a: *a, h: *h, mxid: string(mxid), nb: nb, na: na})
		return nil
	}
	remove := func(a *akey) { ops = append(ops, ixOp{a: *a, del: true}) }
	var err error
	if c.lo > 0 {
		err = ix.readRanges(ix.ctx, [][2]uint64{{c.lo, c.hi}}, upsert)
	}
	if err == nil {
		err = ix.readKeys(ix.ctx, c.refreshKeys(), upsert, remove)
	}
	if err == nil {
		ix.mu.Lock()
		for i := range ops {
			o := &ops[i]
			if o.del {
				ix.tab.remove(&o.a)
			} else if err = ix.tab.upsert(&o.a, &o.h, []byte(o.mxid), o.nb, o.na); err != nil {
				break
			}
		}
		ix.mu.Unlock()
	}
	if err != nil && ix.ctx.Err() == nil {
		ix.s.log.Error("store: lookup index: refresh failed; reloading", "err", err)
		ix.reloadLocked()
	}
}

// write runs commit, a database write that has committed (or failed) when
// it returns, holding wmu, and then brings the index up to date with the
// change it reports. A nil index just runs commit.
func (ix *lookupIndex) write(commit func() (ixChange, error)) error {
	if ix == nil {
		_, err := commit()
		return err
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.bumped = false
	c, err := commit()
	if err == nil && ix.bumped {
		if ix.bumpPrev != ix.version {
			// Another process wrote since this index last looked.
			if !ix.loading && ix.tab != nil {
				ix.s.log.Info("store: lookup index: associations changed by another process; reloading")
				ix.reloadLocked()
				return nil
			}
			ix.stale = true
		}
		ix.version = ix.bumpPrev + 1
	}
	if err != nil {
		// The write may still have committed (say, the connection
		// broke after COMMIT): ask the database.
		if !c.empty() {
			ix.refreshLocked(&c)
		}
		return err
	}
	if c.empty() {
		return nil
	}
	ix.mu.Lock()
	if ix.tab != nil { // published, or kept while a load runs
		err = c.applyTo(ix.tab)
	}
	ix.mu.Unlock()
	if ix.loading {
		ix.pending.add(&c)
		if err != nil {
			ix.s.log.Error("store: lookup index: update of the kept index failed; dropping it", "err", err)
			ix.mu.Lock()
			ix.tab.release()
			ix.tab = nil
			ix.mu.Unlock()
		}
		return nil
	}
	if err != nil {
		ix.s.log.Error("store: lookup index: update failed; reloading", "err", err)
		ix.reloadLocked()
	}
	return nil
}

func (c *ixChange) empty() bool {
	return len(c.rows) == 0 && len(c.deleted) == 0 && len(c.rehash) == 0 && len(c.keys) == 0 && c.lo == 0 && !c.reload
}

// ---------------------------------------------------------------- PostgreSQL

// ixNote is a NOTIFY payload: which rows a transaction changed.
type ixNote struct {
	I string   `json:"i"`           // the writing Store's instance
	K []string `json:"k,omitempty"` // [medium, address]
	R []uint64 `json:"r,omitempty"` // [first id, last id]
	X bool     `json:"x,omitempty"` // anything may have changed
}

// maxNotifyPayload is under PostgreSQL's 8000-byte limit.
const maxNotifyPayload = 7900

// notify tells, inside the writing transaction tx, the other instances
// about change c: pg_notify on PostgreSQL, a bump of the write counter on
// SQLite.
func (ix *lookupIndex) notify(tx *gorm.DB, c ixChange) error {
	if ix == nil || c.empty() {
		return nil
	}
	if ix.versioned {
		var v int64
		err := tx.Raw(`INSERT INTO settings ("key", value) VALUES (?, '1')
			ON CONFLICT ("key") DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)
			RETURNING CAST(value AS INTEGER)`, versionKey).Row().Scan(&v)
		if err != nil {
			return err
		}
		ix.bumpPrev, ix.bumped = v-1, true
		return nil
	}
	if ix.channel == "" {
		return nil
	}
	n := ixNote{I: ix.instance}
	switch {
	case c.lo > 0 && len(c.deleted) == 0:
		n.R = []uint64{c.lo, c.hi}
	case len(c.rows)+len(c.deleted)+len(c.rehash) == 1 && c.lo == 0:
		var k ThreePID
		switch {
		case len(c.rows) == 1:
			k = ThreePID{c.rows[0].medium, c.rows[0].address}
		case len(c.rehash) == 1:
			k = ThreePID{c.rehash[0].medium, c.rehash[0].address}
		default:
			k = c.deleted[0]
		}
		n.K = []string{k.Medium, k.Address}
	default:
		n.X = true
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if len(payload) > maxNotifyPayload {
		payload, _ = json.Marshal(ixNote{I: ix.instance, X: true})
	}
	return tx.Exec("SELECT pg_notify(?, ?)", ix.channel, string(payload)).Error
}

// writeTx runs fn in a transaction, so that its notification (or, on
// SQLite, its bump of the write counter) commits with it.
func (s *Store) writeTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	db := s.wdb.WithContext(ctx)
	if s.ix == nil {
		return fn(db)
	}
	return db.Transaction(fn)
}

// listen keeps a LISTEN connection open and applies other instances'
// changes. Every (re)connection starts a full load: notifications may have
// been missed while disconnected.
func (ix *lookupIndex) listen() {
	defer ix.wg.Done()
	ctx := ix.ctx
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ix.wmu.Lock()
		gen := ix.beginLoadKeepingLocked(true)
		ix.wmu.Unlock()

		conn, err := pgx.Connect(ctx, ix.dsn)
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{ix.channel}.Sanitize()); err != nil {
				_ = conn.Close(context.Background())
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ix.s.log.Error("store: lookup index: listen failed; retrying (lookups use the loaded index, if any, else the database)", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		ix.listenPID.Store(conn.PgConn().PID())
		// Listening: whatever commits from now on is notified, and the
		// load's snapshot will include everything before.
		ix.wmu.Lock()
		if ix.gen == gen {
			ix.spawnLoadLocked(gen)
		}
		ix.wmu.Unlock()
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() == nil {
					ix.s.log.Error("store: lookup index: listen connection lost; reloading", "err", err)
				}
				break
			}
			ix.onNotify(n.Payload)
		}
		_ = conn.Close(context.Background())
	}
}

func (ix *lookupIndex) onNotify(payload string) {
	var n ixNote
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		ix.s.log.Error("store: lookup index: bad notification; reloading", "err", err)
		n = ixNote{X: true}
	}
	if n.I == ix.instance {
		return // applied when it committed
	}
	var c ixChange
	switch {
	case n.X:
		c.reload = true
	case len(n.R) == 2:
		c.lo, c.hi = n.R[0], n.R[1]
	case len(n.K) == 2:
		c.keys = []ThreePID{{n.K[0], n.K[1]}}
	default:
		return
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.refreshLocked(&c)
}

// ---------------------------------------------------------------- lookups

// ixScratch holds a batch lookup's keys and probes; pooled, as batches
// run to thousands of addresses.
type ixScratch struct {
	hk   []hkey
	ak   []akey
	slot []uint32
	hit  []int32 // the answering entry, or -1
	seen []int32 // dropRepeats' set
	sink byte
}

// dropRepeats forgets the hits of entries an earlier key already hit: a
// hash asked twice is answered once. A key hits one entry, and an entry
// has one key, so repeated entries are repeated keys. The set is open
// addressing over entry numbers, sized for hits.
func (sc *ixScratch) dropRepeats(hits int) {
	n := 1 << bits.Len(uint(2*hits))
	if cap(sc.seen) < n {
		sc.seen = make([]int32, n)
	}
	set := sc.seen[:n]
	for i := range set {
		set[i] = -1
	}
	mask, shift := uint32(n-1), 32-bits.Len(uint(n-1))
	for i, idx := range sc.hit {
		if idx < 0 {
			continue
		}
		for j := uint32(idx) * 0x9E3779B1 >> shift; ; j = (j + 1) & mask { // Fibonacci hashing
			if set[j] == idx {
				sc.hit[i] = -1
				break
			}
			if set[j] < 0 {
				set[j] = idx
				break
			}
		}
	}
}

var scratchPool = sync.Pool{New: func() any { return new(ixScratch) }}

func getScratch(n int) *ixScratch {
	sc := scratchPool.Get().(*ixScratch)
	if cap(sc.slot) < n {
		sc.hk, sc.ak = make([]hkey, n), make([]akey, n)
		sc.slot, sc.hit = make([]uint32, n), make([]int32, n)
	}
	sc.hk, sc.ak, sc.slot, sc.hit = sc.hk[:n], sc.ak[:n], sc.slot[:n], sc.hit[:n]
	return sc
}

// probe finds the answering entry of every key, in passes over the batch
// rather than one key after another: the loads of a pass do not depend on
// each other, so their cache misses overlap instead of queueing (at 1M
// bindings the table is far larger than the CPU caches). It returns the
// number of hits and their total MXID length. Holds mu (shared).
func (t *ixTable) probe(sc *ixScratch, byHash bool, now int64) (hits, size int) {
	tab := t.as
	if byHash {
		tab = t.hs
	}
	for i := range sc.slot { // first slots
		var k uint64
		if byHash {
			k = le64(sc.hk[i][:8])
		} else {
			k = le64(sc.ak[i][:8])
		}
		sc.slot[i] = tab[t.home(k)]
	}
	var x byte
	for i, v := range sc.slot { // the entries they point to, when the tag matches
		var k uint64
		if byHash {
			k = le64(sc.hk[i][:8])
		} else {
			k = le64(sc.ak[i][:8])
		}
		if v != 0 && v&^ixIdxMask == tag(k) {
			e := &t.ents[v&ixIdxMask-1]
			x ^= e.h[0] ^ byte(e.off)
		}
	}
	for i, v := range sc.slot { // now mostly cache hits
		sc.hit[i] = -1
		if v == 0 {
			continue
		}
		var e *ixEntry
		if byHash {
			e = t.byHash(&sc.hk[i], now)
		} else if idx := t.byAddr(&sc.ak[i]); idx >= 0 {
			if e = &t.ents[idx]; !t.valid(e, now) {
				e = nil
			}
		}
		if e != nil {
			sc.hit[i] = int32((uintptr(unsafe.Pointer(e)) - uintptr(unsafe.Pointer(&t.ents[0]))) / unsafe.Sizeof(ixEntry{}))
			hits++
		}
	}
	for _, idx := range sc.hit { // the MXIDs of the hits
		if idx >= 0 {
			size += t.mxidLen(&t.ents[idx])
		}
	}
	sc.sink = x
	return hits, size
}

// each calls fn for every hit of the last probe with its MXID, as a string
// backed by one allocation for the whole batch. Holds mu (shared).
func (t *ixTable) each(sc *ixScratch, size int, buf []byte, fn func(i int, mxid string)) []byte {
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:0]
	for i, idx := range sc.hit {
		if idx < 0 {
			continue
		}
		pos := len(buf)
		buf = t.appendMXID(buf, &t.ents[idx]) // within capacity: no copy
		if len(buf) == pos {
			fn(i, "")
			continue
		}
		fn(i, unsafe.String(&buf[pos], len(buf)-pos))
	}
	return buf
}

// lookupHashes answers LookupHashes from the index; ok is false when it is
// not loaded.
func (ix *lookupIndex) lookupHashes(hashes []string, now int64, m *MXIDs) (ok bool) {
	if ix == nil {
		return false
	}
	sc := getScratch(len(hashes))
	defer scratchPool.Put(sc)
	for i, s := range hashes {
		sc.hk[i] = hashKey(s)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	t := ix.tab
	if t == nil {
		return false
	}
	hits, size := t.probe(sc, true, now)
	if hits > 1 {
		sc.dropRepeats(hits)
	}
	out := m.reset(len(hashes))
	m.buf = t.each(sc, size, m.buf, func(i int, mxid string) { out[i] = mxid })
	return true
}

// lookupPairs answers LookupThreePIDs from the index; ok is false when it
// is not loaded.
func (ix *lookupIndex) lookupPairs(pairs []ThreePID, now int64, m *MXIDs) (ok bool) {
	if ix == nil {
		return false
	}
	sc := getScratch(len(pairs))
	defer scratchPool.Put(sc)
	for i, p := range pairs {
		sc.ak[i] = addrKey(p.Medium, p.Address)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	t := ix.tab
	if t == nil {
		return false
	}
	_, size := t.probe(sc, false, now)
	out := m.reset(len(pairs))
	m.buf = t.each(sc, size, m.buf, func(i int, mxid string) { out[i] = mxid })
	return true
}

// bound reports whether (medium, address) is bound and valid at now;
// known is false when the index is not loaded.
func (ix *lookupIndex) bound(medium, address string, now int64) (bound, known bool) {
	_, bound, known = ix.find(medium, address, now, false)
	return bound, known
}

// find looks (medium, address) up; the Binding (with its MXID when
// withMXID) is set when it is bound and valid at now, and known is false
// when the index is not loaded.
func (ix *lookupIndex) find(medium, address string, now int64, withMXID bool) (b Binding, bound, known bool) {
	if ix == nil {
		return b, false, false
	}
	a := addrKey(medium, address)
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	t := ix.tab
	if t == nil {
		return b, false, false
	}
	idx := t.byAddr(&a)
	if idx < 0 {
		return b, false, true
	}
	e := &t.ents[idx]
	nb, na := t.window(e)
	if nb > now || now > na {
		return b, false, true
	}
	b = Binding{NotBefore: nb, NotAfter: na}
	if withMXID {
		b.MXID = string(t.mxid(e)) // a copy: the arena is reused once mu is released
	}
	return b, true, true
}

// Binding is what the lookup index holds of one association.
type Binding struct {
	MXID                string
	NotBefore, NotAfter int64 // Unix ms
}

// IndexedBinding answers from the lookup index alone whether (medium,
// address) is bound at nowMS, and to what; known is false while the index
// is not loaded.
func (s *Store) IndexedBinding(medium, address string, nowMS int64) (b Binding, bound, known bool) {
	return s.ix.find(medium, address, nowMS, true)
}

// LookupThreePIDs returns, for each of pairs, the MXID it is bound to if
// the association is valid at nowMS, else "". It answers from the lookup
// index once loaded, from the database before.
func (s *Store) LookupThreePIDs(ctx context.Context, pairs []ThreePID, nowMS int64) ([]string, error) {
	var m MXIDs
	err := s.LookupThreePIDsInto(ctx, pairs, nowMS, &m)
	return m.List, err
}

// MXIDs holds the answers of a bulk lookup (LookupThreePIDsInto) in memory
// that serves the next lookup given the same MXIDs: a 1,000-pair lookup's
// answers were 26 KB of allocation a request.
type MXIDs struct {
	// List[i] is the MXID of the i-th pair asked, or "". Its strings
	// point into memory the next lookup into these MXIDs overwrites.
	List []string
	buf  []byte
}

// reset empties m for n answers and returns m.List.
func (m *MXIDs) reset(n int) []string {
	if cap(m.List) < n {
		m.List = make([]string, n)
	} else {
		m.List = m.List[:n]
		clear(m.List)
	}
	return m.List
}

// Cap is how many answers m has room for without allocating.
func (m *MXIDs) Cap() int { return cap(m.List) }

// LookupThreePIDsInto is LookupThreePIDs, answering into m.
func (s *Store) LookupThreePIDsInto(ctx context.Context, pairs []ThreePID, nowMS int64, m *MXIDs) error {
	if s.ix.lookupPairs(pairs, nowMS, m) {
		return nil
	}
	found, err := s.BulkAssociations(ctx, pairs, nowMS)
	if err != nil {
		return err
	}
	out := m.reset(len(pairs))
	for i, p := range pairs {
		if a, ok := found[p]; ok {
			out[i] = a.MXID
		}
	}
	return nil
}

var errAssociationNotFound = fmt.Errorf("store: association: %w", ErrNotFound)

// SignedAssociation returns the signed JSON of the association of (medium,
// address) if it is valid at nowMS, else ErrNotFound. Unbound 3PIDs are
// answered by the lookup index alone; bound ones are read with a prepared
// statement.
func (s *Store) SignedAssociation(ctx context.Context, medium, address string, nowMS int64) ([]byte, error) {
	if bound, known := s.ix.bound(medium, address, nowMS); known && !bound {
		return nil, errAssociationNotFound
	}
	if s.dialect == DialectSQLite {
		// A one-row read: not worth go-sqlite3's watcher goroutine.
		ctx = context.WithoutCancel(ctx)
	}
	var signed []byte
	err := s.signedQuery(ctx, medium, address, nowMS).Scan(&signed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errAssociationNotFound
	}
	if err != nil {
		return nil, wrap("signed association", err)
	}
	if signed == nil {
		signed = []byte{}
	}
	return signed, nil
}

// signedQuery runs SignedAssociation's query, prepared once per Store.
func (s *Store) signedQuery(ctx context.Context, medium, address string, nowMS int64) *sql.Row {
	const q = "SELECT signed FROM associations WHERE medium = ? AND address = ? AND not_before <= ? AND not_after >= ?"
	var slot *atomic.Pointer[sql.Stmt]
	if s.ix != nil {
		slot = &s.ix.signed
	}
	return s.queryRow(ctx, slot, q, medium, address, nowMS, nowMS)
}

// queryRow runs q (with ? placeholders) through the statement in slot,
// preparing it on first use; through GORM when there is no slot (a Store
// without an index) or it cannot be prepared.
func (s *Store) queryRow(ctx context.Context, slot *atomic.Pointer[sql.Stmt], q string, args ...any) *sql.Row {
	sqlDB, err := s.db.DB()
	if err != nil || slot == nil {
		return s.db.WithContext(ctx).Raw(q, args...).Row()
	}
	stmt := slot.Load()
	if stmt == nil {
		s.ix.stmtMu.Lock()
		if stmt = slot.Load(); stmt == nil {
			pq := q
			if s.dialect == DialectPostgres {
				pq = numberedPlaceholders(q)
			}
			if stmt, err = sqlDB.PrepareContext(ctx, pq); err == nil {
				slot.Store(stmt)
			}
		}
		s.ix.stmtMu.Unlock()
		if stmt == nil {
			return s.db.WithContext(ctx).Raw(q, args...).Row()
		}
	}
	return stmt.QueryRowContext(ctx, args...)
}

// numberedPlaceholders turns q's ? placeholders into PostgreSQL's $1, $2...
// (the queries it is given hold no ? otherwise).
func numberedPlaceholders(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
