package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// GetValidated3pid is GET .../3pid/getValidated3pid.
func (s *Server) GetValidated3pid(ctx context.Context, req gen.GetValidated3pidRequestObject) (gen.GetValidated3pidResponseObject, error) {
	v, err := s.id.Validated(ctx, req.Params.Sid, req.Params.ClientSecret)
	if err != nil {
		return nil, err
	}
	at := int(v.ValidatedAt.UnixMilli())
	return gen.GetValidated3pid200JSONResponse{Medium: &v.Medium, Address: &v.Address, ValidatedAt: &at}, nil
}

// GetValidated3pidV2 is GET /_matrix/identity/v2/3pid/getValidated3pid.
func (s *Server) GetValidated3pidV2(ctx context.Context, req gen.GetValidated3pidV2RequestObject) (gen.GetValidated3pidV2ResponseObject, error) {
	v, err := s.id.Validated(ctx, req.Params.Sid, req.Params.ClientSecret)
	if err != nil {
		return nil, err
	}
	return gen.GetValidated3pidV2200JSONResponse{Medium: v.Medium, Address: v.Address, ValidatedAt: v.ValidatedAt.UnixMilli()}, nil
}

func bindResponse(raw []byte) (gen.Bind200JSONResponse, error) {
	var r gen.Bind200JSONResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, matrixerr.Unknown(fmt.Errorf("decode stored association: %w", err))
	}
	return r, nil
}

// Bind is POST /_matrix/identity/api/v1/bind, the seed's path.
func (s *Server) Bind(ctx context.Context, req gen.BindRequestObject) (gen.BindResponseObject, error) {
	raw, err := s.id.Bind(ctx, req.Body.Sid, req.Body.ClientSecret, req.Body.Mxid)
	if err != nil {
		return nil, err
	}
	return bindResponse(raw)
}

// Bind3pid is POST /_matrix/identity/api/v1/3pid/bind, the path homeservers call.
func (s *Server) Bind3pid(ctx context.Context, req gen.Bind3pidRequestObject) (gen.Bind3pidResponseObject, error) {
	raw, err := s.id.Bind(ctx, req.Body.Sid, req.Body.ClientSecret, req.Body.Mxid)
	if err != nil {
		return nil, err
	}
	r, err := bindResponse(raw)
	return gen.Bind3pid200JSONResponse(r), err
}

// BindV2 is POST /_matrix/identity/v2/3pid/bind: only for the token's own
// user, which is why v2 bind is authenticated at all (MSC2140).
func (s *Server) BindV2(ctx context.Context, req gen.BindV2RequestObject) (gen.BindV2ResponseObject, error) {
	b := req.Body
	if err := identity.RequireSelf(userID(ctx), b.Mxid, "mxid"); err != nil {
		return nil, err
	}
	raw, err := s.id.Bind(ctx, b.Sid, b.ClientSecret, b.Mxid)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.BindV2200JSONResponse](json.RawMessage(raw))
}
