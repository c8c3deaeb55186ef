package handlers

import (
	"context"
	"net/http"
	"sync"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
)

// rawJSON is a response already encoded: the stored signed association is
// served byte for byte, which is both exact and cheap.
type rawJSON []byte

func (r rawJSON) write(w http.ResponseWriter) error {
	setJSON(w.Header())
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r)
	return err
}

func (r rawJSON) VisitLookupV1Response(w http.ResponseWriter) error { return r.write(w) }

// LookupV1 is GET /_matrix/identity/api/v1/lookup: the signed association
// for one 3PID, or {} when it is not bound.
func (s *Server) LookupV1(ctx context.Context, req gen.LookupV1RequestObject) (gen.LookupV1ResponseObject, error) {
	signed, err := s.id.Lookup(ctx, req.Params.Medium, req.Params.Address)
	switch {
	case err != nil:
		return nil, err
	case signed == nil:
		return gen.LookupV1200JSONResponse{}, nil
	}
	return rawJSON(signed), nil
}

// BulkLookup is POST /_matrix/identity/api/v1/bulk_lookup.
func (s *Server) BulkLookup(ctx context.Context, req gen.BulkLookupRequestObject) (gen.BulkLookupResponseObject, error) {
	in := req.Body.Threepids
	m := answerPool.Get().(*identity.MXIDs)
	if err := s.id.BulkLookup(ctx, in, m); err != nil {
		return nil, err
	}
	return bulkAnswer{in: in, m: m}, nil
}

// answerPool holds bulk and v2 lookup answers for reuse once written
// (bulkAnswer, mappingsAnswer).
var answerPool = sync.Pool{New: func() any { return new(identity.MXIDs) }}

// maxPooledAnswers bounds the answers a pooled MXIDs keeps room for.
const maxPooledAnswers = 4096

// GetHashDetails is GET /_matrix/identity/v2/hash_details.
func (s *Server) GetHashDetails(ctx context.Context, _ gen.GetHashDetailsRequestObject) (gen.GetHashDetailsResponseObject, error) {
	p, err := s.id.Pepper(ctx)
	if err != nil {
		return nil, err
	}
	return gen.GetHashDetails200JSONResponse{Algorithms: identity.Algorithms, LookupPepper: p}, nil
}

// LookupV2 is POST /_matrix/identity/v2/lookup.
func (s *Server) LookupV2(ctx context.Context, req gen.LookupV2RequestObject) (gen.LookupV2ResponseObject, error) {
	b := req.Body
	m := answerPool.Get().(*identity.MXIDs)
	if err := s.id.HashedLookup(ctx, string(b.Algorithm), b.Pepper, b.Addresses, m); err != nil {
		return nil, err
	}
	return mappingsAnswer{hashes: b.Addresses, m: m}, nil
}
