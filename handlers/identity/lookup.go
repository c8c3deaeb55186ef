package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/store"
)

// Hashed-lookup algorithms, in the order hash_details lists them.
const (
	AlgorithmNone   = "none"
	AlgorithmSHA256 = "sha256"
)

// Algorithms are the hashed-lookup algorithms served.
var Algorithms = []string{AlgorithmNone, AlgorithmSHA256}

// defaultMaxLookup caps bulk_lookup and v2 lookup requests.
const defaultMaxLookup = 10000

func (s *Service) tooMany(n int) error {
	if n > s.cfg.MaxLookupAddresses {
		return matrixerr.New(http.StatusBadRequest, "M_TOO_LARGE",
			fmt.Sprintf("At most %d addresses may be looked up at once, got %d", s.cfg.MaxLookupAddresses, n))
	}
	return nil
}

// Lookup returns the signed association of one 3PID as served by the v1
// lookup, or nil when it is not bound.
func (s *Service) Lookup(ctx context.Context, medium, address string) ([]byte, error) {
	address, now := canonicalAddress(medium, address), s.now().UnixMilli()
	if signed, ok, err := s.resignFromIndex(medium, address, now); ok || err != nil {
		return signed, err
	}
	signed, err := s.store.SignedAssociation(ctx, medium, address, now)
	switch {
	case err == nil:
		return signed, nil
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	}
	return nil, matrixerr.Unknown(fmt.Errorf("lookup: %w", err))
}

// resignFromIndex answers a v1 lookup from the lookup index by signing the
// association again instead of reading the stored one; ok is false while
// the index is not loaded. Reading the stored association costs more than
// signing it: on PostgreSQL about 65 µs of backend CPU on top of ours, on
// SQLite a B-tree walk that grows with the table (an unbound address paid
// it too), against about 12 µs for a signature (signing.Key.Sign). The
// answer is the same: Ed25519 signatures are
// deterministic and every stored association was signed over these six
// fields with ts = not_before (SignAssociation; TestResignMatchesStored
// holds the two in step); after a server name or key change it is signed
// with the current ones, which is what homeservers verify against.
func (s *Service) resignFromIndex(medium, address string, now int64) (signed []byte, ok bool, _ error) {
	b, bound, known := s.store.IndexedBinding(medium, address, now)
	switch {
	case !known:
		return nil, false, nil
	case !bound:
		return nil, true, nil
	}
	a := association{Address: address, Medium: medium, MXID: b.MXID, NotBefore: b.NotBefore, NotAfter: b.NotAfter, TS: b.NotBefore}
	signed, err := a.sign(s.key, s.cfg.ServerName)
	if err != nil {
		return nil, true, matrixerr.Unknown(fmt.Errorf("lookup: %w", err))
	}
	return signed, true, nil
}

// BulkLookup looks [medium, address] pairs up into m: m.List[i] is the
// MXID in[i] is bound to, or "". The caller answers the bound ones with
// the pairs as the client sent them; building those triples here cost a
// third of the allocations of a 1,000-pair request, and the encoder reads
// them in place. m may be reused for another lookup once the answer is
// written.
func (s *Service) BulkLookup(ctx context.Context, in [][]string, m *MXIDs) error {
	if err := s.tooMany(len(in)); err != nil {
		return err
	}
	pp := pairsPool.Get().(*[]store.ThreePID)
	defer putPairs(pp)
	pairs := slices.Grow((*pp)[:0], len(in))[:len(in)]
	*pp = pairs
	for i, t := range in {
		if len(t) != 2 {
			return matrixerr.InvalidParam("Each threepid must be [medium, address]")
		}
		pairs[i] = store.ThreePID{Medium: t[0], Address: canonicalAddress(t[0], t[1])}
	}
	if err := s.store.LookupThreePIDsInto(ctx, pairs, s.now().UnixMilli(), m); err != nil {
		return matrixerr.Unknown(fmt.Errorf("bulk lookup: %w", err))
	}
	return nil
}

// MXIDs holds a bulk lookup's answers, reusable (store.MXIDs).
type MXIDs = store.MXIDs

// pairsPool holds the (medium, canonical address) slices of bulk lookups,
// which live only for the store's lookup: at 32 KB a 1,000-pair request
// they were among the largest allocations on the path.
var pairsPool = sync.Pool{New: func() any { return new([]store.ThreePID) }}

// maxPooledPairs bounds the slices kept (128 KB): a rare request of up to
// 10,000 pairs (320 KB) should not stay pinned in the pool.
const maxPooledPairs = 4096

// putPairs returns pairs to the pool, emptied so the pool pins no
// request's strings.
func putPairs(pp *[]store.ThreePID) {
	if cap(*pp) > maxPooledPairs {
		return
	}
	clear(*pp)
	*pp = (*pp)[:0]
	pairsPool.Put(pp)
}

// HashedLookup is the v2 lookup, answered into m: m.List[i] is the MXID
// addresses[i] is bound to, or "" when it is not or repeats an earlier
// address (each mapping is answered once). sha256 lookups match the
// hashes stored with each binding (computed at bind time and indexed,
// never per lookup); "none" lookups take "<address> <medium>" strings.
// m may be reused for another lookup once the answer is written.
func (s *Service) HashedLookup(ctx context.Context, algorithm, pepper string, addresses []string, m *MXIDs) error {
	current, err := s.Pepper(ctx)
	if err != nil {
		return err
	}
	if algorithm != AlgorithmSHA256 && algorithm != AlgorithmNone {
		return matrixerr.InvalidParam("Unsupported algorithm: use one of those hash_details lists")
	}
	if !secretEqual(pepper, current) {
		return matrixerr.InvalidPepper(AlgorithmSHA256, current)
	}
	if err := s.tooMany(len(addresses)); err != nil {
		return err
	}
	now := s.now().UnixMilli()
	if algorithm == AlgorithmSHA256 {
		if err := s.store.LookupHashesInto(ctx, addresses, now, m); err != nil {
			return matrixerr.Unknown(fmt.Errorf("hashed lookup: %w", err))
		}
		return nil
	}
	pairs := make([]store.ThreePID, len(addresses))
	for i, a := range addresses {
		sp := strings.LastIndexByte(a, ' ')
		if sp <= 0 {
			return matrixerr.InvalidParam(`With algorithm "none" each address must be "<address> <medium>"`)
		}
		medium := a[sp+1:]
		pairs[i] = store.ThreePID{Medium: medium, Address: canonicalAddress(medium, a[:sp])}
	}
	if err := s.store.LookupThreePIDsInto(ctx, pairs, now, m); err != nil {
		return matrixerr.Unknown(fmt.Errorf("lookup: %w", err))
	}
	seen := make(map[string]bool)
	for i, mxid := range m.List {
		if mxid != "" {
			if seen[addresses[i]] {
				m.List[i] = ""
			}
			seen[addresses[i]] = true
		}
	}
	return nil
}
