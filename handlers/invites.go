package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// publicKey is one entry of store-invite's public_keys.
type publicKey struct {
	PublicKey      string `json:"public_key"`
	KeyValidityURL string `json:"key_validity_url"`
}

// storedInvite is the answer to store-invite.
type storedInvite struct {
	Token       string
	DisplayName string
	PublicKeys  []publicKey // [long-term, ephemeral]
}

// inviteRequest is a store-invite call; params holds every field the
// client sent, for the invite mail.
type inviteRequest struct {
	medium, address, roomID, sender string
	params                          map[string]any
}

// storeInvite records a pending invite to an unbound email address, with a
// fresh ephemeral key, and mails the invitee.
func (s *Server) storeInvite(ctx context.Context, prefix string, r inviteRequest) (storedInvite, error) {
	if r.medium != mediumEmail {
		return storedInvite{}, matrixerr.Unrecognized(400, "Only the email medium is supported for invites")
	}
	addr, err := canonicalEmail(r.address)
	if err != nil {
		return storedInvite{}, err
	}
	if existing, err := s.store.Association(ctx, mediumEmail, addr, s.now().UnixMilli()); err == nil {
		return storedInvite{}, matrixerr.ThreepidInUse(existing.MXID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return storedInvite{}, matrixerr.Unknown(fmt.Errorf("check binding: %w", err))
	}
	if err := s.allowMessage(addr, clientIP(ctx)); err != nil {
		return storedInvite{}, err
	}
	eph, err := signing.GenerateKey("ed25519:0")
	if err != nil {
		return storedInvite{}, matrixerr.Unknown(err)
	}
	params, err := json.Marshal(r.params)
	if err != nil {
		return storedInvite{}, matrixerr.Unknown(fmt.Errorf("encode invite params: %w", err))
	}
	inv := store.Invite{
		Token: randomString(32, alphanumeric), Medium: mediumEmail, Address: addr,
		RoomID: r.roomID, Sender: r.sender,
		EphemeralPublicKey:  eph.PublicBase64(),
		EphemeralPrivateKey: seedBase64(eph),
		Params:              params,
	}
	// Persist before mailing: a mail that names an invite must never refer
	// to one that was not kept.
	if err := s.store.CreateInvite(ctx, inv); err != nil {
		return storedInvite{}, matrixerr.Unknown(fmt.Errorf("store invite: %w", err))
	}
	if err := s.sendInviteMail(ctx, inv, r.params); err != nil {
		return storedInvite{}, err
	}
	base := s.cfg.PublicBaseURL + prefix
	return storedInvite{
		Token:       inv.Token,
		DisplayName: redactEmail(addr),
		PublicKeys: []publicKey{
			{PublicKey: s.key.PublicBase64(), KeyValidityURL: base + "/pubkey/isvalid"},
			{PublicKey: inv.EphemeralPublicKey, KeyValidityURL: base + "/pubkey/ephemeral/isvalid"},
		},
	}, nil
}

func seedBase64(k signing.Key) string {
	return b64(k.Private.Seed())
}

func (s *Server) sendInviteMail(ctx context.Context, inv store.Invite, params map[string]any) error {
	str := func(k string) string { v, _ := params[k].(string); return v }
	extra := map[string]string{}
	for k, v := range params {
		if sv, ok := v.(string); ok {
			extra[k] = sv
		}
	}
	msg, err := s.templates.Invite(mail.InviteData{
		Address: inv.Address, RoomID: inv.RoomID, RoomName: str("room_name"), RoomAlias: str("room_alias"),
		RoomAvatarURL: str("room_avatar_url"), RoomType: str("room_type"), RoomJoinRules: str("room_join_rules"),
		SenderID: inv.Sender, SenderDisplayName: str("sender_display_name"), SenderAvatarURL: str("sender_avatar_url"),
		Token: inv.Token, ServerName: s.cfg.ServerName, WebClientLocation: str("org.matrix.web_client_location"),
		Extra: extra,
	})
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("render invite mail: %w", err))
	}
	if err := s.mail.Send(ctx, msg); err != nil {
		return matrixerr.EmailSendError(err)
	}
	return nil
}

// signInvite is sign-ed25519: the invitee proves it holds the invite's
// ephemeral private key by having us sign {mxid, sender, token} with it.
func (s *Server) signInvite(ctx context.Context, mxid, token, privateKey string) (map[string]any, error) {
	inv, err := s.store.InviteByToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return nil, matrixerr.Unrecognized(404, "Didn't recognize token")
	}
	if err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("load invite: %w", err))
	}
	if err := checkMXID(mxid); err != nil {
		return nil, err
	}
	key, err := signing.KeyFromSeed("ed25519:0", privateKey)
	if err != nil {
		return nil, matrixerr.InvalidParam("private_key must be an unpadded base64 ed25519 key")
	}
	signed, err := signing.SignJSON(map[string]any{"mxid": mxid, "sender": inv.Sender, "token": inv.Token}, s.cfg.ServerName, key)
	if err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("sign invite: %w", err))
	}
	return signed, nil
}

// StoreInvite is POST /_matrix/identity/api/v1/store-invite.
func (s *Server) StoreInvite(ctx context.Context, req gen.StoreInviteRequestObject) (gen.StoreInviteResponseObject, error) {
	b := req.Body
	res, err := s.storeInvite(ctx, v1Prefix, inviteRequest{
		medium: b.Medium, address: b.Address, roomID: b.RoomId, sender: b.Sender, params: inviteParams(b),
	})
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.StoreInvite200JSONResponse](res.wire())
}

// wire is the JSON shape homeservers read, with the legacy public_key.
func (r storedInvite) wire() map[string]any {
	return map[string]any{
		"token": r.Token, "display_name": r.DisplayName,
		"public_key": r.PublicKeys[0].PublicKey, "public_keys": r.PublicKeys,
	}
}

// inviteParams is every field of the request, for the invite mail.
func inviteParams(b any) map[string]any {
	raw, _ := json.Marshal(b)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
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

// BlindlySignStuff is POST /_matrix/identity/api/v1/sign-ed25519.
func (s *Server) BlindlySignStuff(ctx context.Context, req gen.BlindlySignStuffRequestObject) (gen.BlindlySignStuffResponseObject, error) {
	signed, err := s.signInvite(ctx, req.Body.Mxid, req.Body.Token, req.Body.PrivateKey)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.BlindlySignStuff200JSONResponse](signed)
}

// StoreInviteV2 is POST /_matrix/identity/v2/store-invite; the sender must
// be the token's user.
func (s *Server) StoreInviteV2(ctx context.Context, req gen.StoreInviteV2RequestObject) (gen.StoreInviteV2ResponseObject, error) {
	b := req.Body
	if err := requireSelf(ctx, b.Sender, "sender"); err != nil {
		return nil, err
	}
	res, err := s.storeInvite(ctx, v2Prefix, inviteRequest{
		medium: b.Medium, address: b.Address, roomID: b.RoomId, sender: b.Sender, params: inviteParams(b),
	})
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.StoreInviteV2200JSONResponse](res.wire())
}

// BlindlySignStuffV2 is POST /_matrix/identity/v2/sign-ed25519.
func (s *Server) BlindlySignStuffV2(ctx context.Context, req gen.BlindlySignStuffV2RequestObject) (gen.BlindlySignStuffV2ResponseObject, error) {
	signed, err := s.signInvite(ctx, req.Body.Mxid, req.Body.Token, req.Body.PrivateKey)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.BlindlySignStuffV2200JSONResponse](signed)
}
