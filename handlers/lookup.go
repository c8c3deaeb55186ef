package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// Hashed-lookup algorithms, in the order hash_details lists them.
const (
	algorithmNone   = "none"
	algorithmSHA256 = "sha256"
)

// defaultMaxLookup caps bulk_lookup and v2 lookup requests.
const defaultMaxLookup = 10000

func (s *Server) maxLookup() int {
	if s.cfg.MaxLookupAddresses > 0 {
		return s.cfg.MaxLookupAddresses
	}
	return defaultMaxLookup
}

func (s *Server) tooMany(n int) error {
	if n > s.maxLookup() {
		return matrixerr.New(http.StatusBadRequest, "M_TOO_LARGE",
			fmt.Sprintf("At most %d addresses may be looked up at once, got %d", s.maxLookup(), n))
	}
	return nil
}

// rawJSON is a response already encoded: the stored signed association is
// served byte for byte, which is both exact and cheap.
type rawJSON []byte

func (r rawJSON) write(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r)
	return err
}

func (r rawJSON) VisitLookupV1Response(w http.ResponseWriter) error { return r.write(w) }

// LookupV1 is GET /_matrix/identity/api/v1/lookup: the signed association
// for one 3PID, or {} when it is not bound.
func (s *Server) LookupV1(ctx context.Context, req gen.LookupV1RequestObject) (gen.LookupV1ResponseObject, error) {
	p := req.Params
	medium, address, now := p.Medium, canonicalAddress(p.Medium, p.Address), s.now().UnixMilli()
	if s.store.Dialect() == store.DialectPostgres {
		if signed, ok, err := s.resignFromIndex(medium, address, now); ok || err != nil {
			return signed, err
		}
	}
	signed, err := s.store.SignedAssociation(ctx, medium, address, now)
	switch {
	case err == nil:
		return rawJSON(signed), nil
	case errors.Is(err, store.ErrNotFound):
		return gen.LookupV1200JSONResponse{}, nil
	}
	return nil, matrixerr.Unknown(fmt.Errorf("lookup: %w", err))
}

// resignFromIndex answers a v1 lookup from the lookup index by signing the
// association again instead of reading the stored one; ok is false while
// the index is not loaded. On PostgreSQL the database's share of the read
// (about 65 µs of backend CPU, on top of ours) is more than an ed25519
// signature (25 µs), and it kept v1 lookups at a third of the status
// route's throughput. The answer is the same: Ed25519 signatures are
// deterministic and every stored association was signed over these six
// fields with ts = not_before (SignAssociation; TestResignMatchesStored
// holds the two in step); after a server name or key change it is signed
// with the current ones, which is what homeservers verify against.
// On SQLite the read is in-process and cheaper than signing.
func (s *Server) resignFromIndex(medium, address string, now int64) (_ gen.LookupV1ResponseObject, ok bool, _ error) {
	b, bound, known := s.store.IndexedBinding(medium, address, now)
	switch {
	case !known:
		return nil, false, nil
	case !bound:
		return gen.LookupV1200JSONResponse{}, true, nil
	}
	a := association{Address: address, Medium: medium, MXID: b.MXID, NotBefore: b.NotBefore, NotAfter: b.NotAfter, TS: b.NotBefore}
	signed, err := a.sign(s.key, s.cfg.ServerName)
	if err != nil {
		return nil, true, matrixerr.Unknown(fmt.Errorf("lookup: %w", err))
	}
	return rawJSON(signed), true, nil
}

// BulkLookup is POST /_matrix/identity/api/v1/bulk_lookup: the bound ones
// among [medium, address] pairs, as [medium, address, mxid], addresses as
// the client sent them.
func (s *Server) BulkLookup(ctx context.Context, req gen.BulkLookupRequestObject) (gen.BulkLookupResponseObject, error) {
	in := req.Body.Threepids
	if err := s.tooMany(len(in)); err != nil {
		return nil, err
	}
	pairs := make([]store.ThreePID, len(in))
	for i, t := range in {
		pairs[i] = store.ThreePID{Medium: t[0], Address: canonicalAddress(t[0], t[1])}
	}
	mxids, err := s.store.LookupThreePIDs(ctx, pairs, s.now().UnixMilli())
	if err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("bulk lookup: %w", err))
	}
	n := 0
	for _, m := range mxids {
		if m != "" {
			n++
		}
	}
	out := make([][]string, 0, n)
	triples := make([]string, 3*n) // one allocation for all the answers
	for i, m := range mxids {
		if m != "" {
			t := triples[:3:3]
			triples = triples[3:]
			t[0], t[1], t[2] = in[i][0], in[i][1], m
			out = append(out, t)
		}
	}
	return fastJSON{gen.BulkLookup200JSONResponse{Threepids: out}}, nil
}

// pepperCache keeps the lookup pepper in memory for a short while: it is
// read on every hashed lookup, and rotation is rare.
type pepperCache struct {
	mu    sync.Mutex
	value string
	until time.Time
}

const pepperCacheTTL = 10 * time.Second

// currentPepper returns the lookup pepper, from memory when fresh.
func (s *Server) currentPepper(ctx context.Context) (string, error) {
	s.peppers.mu.Lock()
	defer s.peppers.mu.Unlock()
	if now := time.Now(); s.peppers.value != "" && now.Before(s.peppers.until) {
		return s.peppers.value, nil
	}
	p, err := s.pepper(ctx)
	if err != nil {
		return "", err
	}
	s.peppers.value, s.peppers.until = p, time.Now().Add(pepperCacheTTL)
	return p, nil
}

// RotatePepper replaces the lookup pepper and rehashes every binding under
// it. Clients holding the old pepper get M_INVALID_PEPPER and fetch the new
// one from hash_details.
func (s *Server) RotatePepper(ctx context.Context, pepper string) (int, error) {
	if pepper == "" {
		pepper = randomString(32, alphanumeric)
	}
	for _, r := range pepper {
		if !strings.ContainsRune(alphanumeric, r) {
			return 0, fmt.Errorf("a lookup pepper must match [a-zA-Z0-9]+")
		}
	}
	if err := s.store.SetSetting(ctx, LookupPepperKey, pepper); err != nil {
		return 0, fmt.Errorf("store pepper: %w", err)
	}
	s.peppers.mu.Lock()
	s.peppers.value, s.peppers.until = "", time.Time{}
	s.peppers.mu.Unlock()
	n, err := s.store.RehashAssociations(ctx, func(medium, address string) string {
		return signing.LookupHash(address, medium, pepper)
	})
	if err != nil {
		return n, fmt.Errorf("rehash: %w", err)
	}
	return n, nil
}

// GetHashDetails is GET /_matrix/identity/v2/hash_details.
func (s *Server) GetHashDetails(ctx context.Context, _ gen.GetHashDetailsRequestObject) (gen.GetHashDetailsResponseObject, error) {
	p, err := s.currentPepper(ctx)
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	return gen.GetHashDetails200JSONResponse{Algorithms: []string{algorithmNone, algorithmSHA256}, LookupPepper: p}, nil
}

// LookupV2 is POST /_matrix/identity/v2/lookup. sha256 lookups match the
// hashes stored with each binding (computed at bind time and indexed, never
// per lookup); "none" lookups take "<address> <medium>" strings. Both are
// answered from the store's in-memory lookup index once it is loaded.
func (s *Server) LookupV2(ctx context.Context, req gen.LookupV2RequestObject) (gen.LookupV2ResponseObject, error) {
	b := req.Body
	pepper, err := s.currentPepper(ctx)
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	if b.Algorithm != algorithmSHA256 && b.Algorithm != algorithmNone {
		return nil, matrixerr.InvalidParam("Unsupported algorithm: use one of those hash_details lists")
	}
	if !secretEqual(b.Pepper, pepper) {
		return nil, matrixerr.InvalidPepper(algorithmSHA256, pepper)
	}
	if err := s.tooMany(len(b.Addresses)); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	if b.Algorithm == algorithmSHA256 {
		// Keyed by the requested hashes, holding only those that resolve:
		// exactly the mappings.
		found, err := s.store.LookupHashes(ctx, b.Addresses, now)
		if err != nil {
			return nil, matrixerr.Unknown(fmt.Errorf("hashed lookup: %w", err))
		}
		return fastJSON{gen.LookupV2200JSONResponse{Mappings: found}}, nil
	}
	pairs := make([]store.ThreePID, len(b.Addresses))
	for i, a := range b.Addresses {
		sp := strings.LastIndexByte(a, ' ')
		if sp <= 0 {
			return nil, matrixerr.InvalidParam(`With algorithm "none" each address must be "<address> <medium>"`)
		}
		medium := a[sp+1:]
		pairs[i] = store.ThreePID{Medium: medium, Address: canonicalAddress(medium, a[:sp])}
	}
	mxids, err := s.store.LookupThreePIDs(ctx, pairs, now)
	if err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("lookup: %w", err))
	}
	mappings := make(map[string]string)
	for i, m := range mxids {
		if m != "" {
			mappings[b.Addresses[i]] = m
		}
	}
	return fastJSON{gen.LookupV2200JSONResponse{Mappings: mappings}}, nil
}
