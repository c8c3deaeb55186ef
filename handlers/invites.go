package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// inviteRequest is a store-invite call of either version; the two bodies
// share their required fields, and every field goes to the invite mail.
func inviteRequest(ctx context.Context, api identity.API, medium, address, roomID, sender string, body any) identity.InviteRequest {
	return identity.InviteRequest{
		API: api, Medium: medium, Address: address, RoomID: roomID, Sender: sender,
		Params: inviteParams(body), ClientIP: clientIP(ctx),
	}
}

// inviteParams is every field of the request, for the invite mail.
func inviteParams(b any) map[string]any {
	raw, _ := json.Marshal(b)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

// inviteWire is the JSON shape homeservers read, with the legacy public_key.
func inviteWire(r identity.StoredInvite) map[string]any {
	return map[string]any{
		"token": r.Token, "display_name": r.DisplayName,
		"public_key": r.PublicKeys[0].PublicKey, "public_keys": r.PublicKeys,
	}
}

// convertJSON moves a value into a generated type through its JSON form.
func convertJSON[T any](v any) (T, error) {
	var out T
	raw, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		return out, matrixerr.Unknown(fmt.Errorf("convert %T: %w", out, err))
	}
	return out, nil
}

// StoreInvite is POST /_matrix/identity/api/v1/store-invite.
func (s *Server) StoreInvite(ctx context.Context, req gen.StoreInviteRequestObject) (gen.StoreInviteResponseObject, error) {
	b := req.Body
	res, err := s.id.StoreInvite(ctx, inviteRequest(ctx, identity.V1, b.Medium, b.Address, b.RoomId, b.Sender, b))
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.StoreInvite200JSONResponse](inviteWire(res))
}

// StoreInviteV2 is POST /_matrix/identity/v2/store-invite; the sender must
// be the token's user.
func (s *Server) StoreInviteV2(ctx context.Context, req gen.StoreInviteV2RequestObject) (gen.StoreInviteV2ResponseObject, error) {
	b := req.Body
	if err := identity.RequireSelf(userID(ctx), b.Sender, "sender"); err != nil {
		return nil, err
	}
	res, err := s.id.StoreInvite(ctx, inviteRequest(ctx, identity.V2, b.Medium, b.Address, b.RoomId, b.Sender, b))
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.StoreInviteV2200JSONResponse](inviteWire(res))
}

// BlindlySignStuff is POST /_matrix/identity/api/v1/sign-ed25519.
func (s *Server) BlindlySignStuff(ctx context.Context, req gen.BlindlySignStuffRequestObject) (gen.BlindlySignStuffResponseObject, error) {
	signed, err := s.id.SignInvite(ctx, req.Body.Mxid, req.Body.Token, req.Body.PrivateKey)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.BlindlySignStuff200JSONResponse](signed)
}

// BlindlySignStuffV2 is POST /_matrix/identity/v2/sign-ed25519.
func (s *Server) BlindlySignStuffV2(ctx context.Context, req gen.BlindlySignStuffV2RequestObject) (gen.BlindlySignStuffV2ResponseObject, error) {
	signed, err := s.id.SignInvite(ctx, req.Body.Mxid, req.Body.Token, req.Body.PrivateKey)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.BlindlySignStuffV2200JSONResponse](signed)
}
