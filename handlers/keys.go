package handlers

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/sigil-matrix/sigil/gen"
)

// supportedVersions are the identity API versions served: every release up
// to the current one (v1 stays available for Dendrite).
var supportedVersions = []string{
	"r0.1.0", "r0.2.0", "r0.2.1", "r0.3.0",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
	"v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18",
}

// GetVersions is GET /_matrix/identity/versions. Without the v1 API
// (api.v1: false) the r0 releases, which define it, are not listed.
func (s *Server) GetVersions(context.Context, gen.GetVersionsRequestObject) (gen.GetVersionsResponseObject, error) {
	if s.v1Disabled {
		return gen.GetVersions200JSONResponse{Versions: v2OnlyVersions}, nil
	}
	return gen.GetVersions200JSONResponse{Versions: supportedVersions}, nil
}

// v2OnlyVersions are the releases without the v1 API (v1.1 removed it).
var v2OnlyVersions = slices.DeleteFunc(slices.Clone(supportedVersions), func(v string) bool { return strings.HasPrefix(v, "r0.") })

// GetPingV1 is GET /_matrix/identity/api/v1.
func (s *Server) GetPingV1(context.Context, gen.GetPingV1RequestObject) (gen.GetPingV1ResponseObject, error) {
	return emptyObject{}, nil
}

// GetPingV2 is GET /_matrix/identity/v2.
func (s *Server) GetPingV2(context.Context, gen.GetPingV2RequestObject) (gen.GetPingV2ResponseObject, error) {
	return emptyObject{}, nil
}

// emptyObject is the status checks' answer, {}, written as bytes: the
// generated response encodes an empty map with encoding/json, which was a
// tenth of the stack's own cost of the cheapest request.
type emptyObject struct{}

var emptyObjectJSON = []byte("{}\n")

func (emptyObject) write(w http.ResponseWriter) error {
	setJSON(w.Header())
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(emptyObjectJSON)
	return err
}

func (o emptyObject) VisitGetPingV1Response(w http.ResponseWriter) error { return o.write(w) }
func (o emptyObject) VisitGetPingV2Response(w http.ResponseWriter) error { return o.write(w) }

// GetPubKey is GET /_matrix/identity/api/v1/pubkey/{keyId}.
func (s *Server) GetPubKey(_ context.Context, req gen.GetPubKeyRequestObject) (gen.GetPubKeyResponseObject, error) {
	k, err := s.id.PublicKey(req.KeyId)
	if err != nil {
		return nil, err
	}
	return gen.GetPubKey200JSONResponse{PublicKey: k}, nil
}

// GetPubKeyV2 is GET /_matrix/identity/v2/pubkey/{keyId}.
func (s *Server) GetPubKeyV2(_ context.Context, req gen.GetPubKeyV2RequestObject) (gen.GetPubKeyV2ResponseObject, error) {
	k, err := s.id.PublicKey(req.KeyId)
	if err != nil {
		return nil, err
	}
	return gen.GetPubKeyV2200JSONResponse{PublicKey: k}, nil
}

// IsPubKeyValid is GET /_matrix/identity/api/v1/pubkey/isvalid.
func (s *Server) IsPubKeyValid(_ context.Context, req gen.IsPubKeyValidRequestObject) (gen.IsPubKeyValidResponseObject, error) {
	return gen.IsPubKeyValid200JSONResponse{Valid: s.id.LongTermKeyValid(req.Params.PublicKey)}, nil
}

// IsPubKeyValidV2 is GET /_matrix/identity/v2/pubkey/isvalid.
func (s *Server) IsPubKeyValidV2(_ context.Context, req gen.IsPubKeyValidV2RequestObject) (gen.IsPubKeyValidV2ResponseObject, error) {
	return gen.IsPubKeyValidV2200JSONResponse{Valid: s.id.LongTermKeyValid(req.Params.PublicKey)}, nil
}

// IsEphemeralPubKeyValid is GET /_matrix/identity/api/v1/pubkey/ephemeral/isvalid.
func (s *Server) IsEphemeralPubKeyValid(ctx context.Context, req gen.IsEphemeralPubKeyValidRequestObject) (gen.IsEphemeralPubKeyValidResponseObject, error) {
	ok, err := s.id.EphemeralKeyValid(ctx, req.Params.PublicKey)
	if err != nil {
		return nil, err
	}
	return gen.IsEphemeralPubKeyValid200JSONResponse{Valid: ok}, nil
}

// IsEphemeralPubKeyValidV2 is GET /_matrix/identity/v2/pubkey/ephemeral/isvalid.
func (s *Server) IsEphemeralPubKeyValidV2(ctx context.Context, req gen.IsEphemeralPubKeyValidV2RequestObject) (gen.IsEphemeralPubKeyValidV2ResponseObject, error) {
	ok, err := s.id.EphemeralKeyValid(ctx, req.Params.PublicKey)
	if err != nil {
		return nil, err
	}
	return gen.IsEphemeralPubKeyValidV2200JSONResponse{Valid: ok}, nil
}
