package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/store"
)

// PublicKey is one entry of store-invite's public_keys.
type PublicKey struct {
	PublicKey      string `json:"public_key"`
	KeyValidityURL string `json:"key_validity_url"`
}

// StoredInvite is the answer to store-invite.
type StoredInvite struct {
	Token       string
	DisplayName string
	PublicKeys  []PublicKey // [long-term, ephemeral]
}

// InviteRequest is a store-invite call.
type InviteRequest struct {
	API                             API // the version called, for key_validity_url
	Medium, Address, RoomID, Sender string
	// Params is every field the client sent, for the invite mail.
	Params map[string]any
	// ClientIP is the caller, for the per-client limit on mail.
	ClientIP string
}

// StoreInvite records a pending invite to an unbound email address, with a
// fresh ephemeral key, and mails the invitee. The invite is delivered to
// the address's owner when it is bound (Bind queues it).
func (s *Service) StoreInvite(ctx context.Context, r InviteRequest) (StoredInvite, error) {
	if r.Medium != mediumEmail {
		return StoredInvite{}, matrixerr.Unrecognized(400, "Only the email medium is supported for invites")
	}
	addr, err := canonicalEmail(r.Address)
	if err != nil {
		return StoredInvite{}, err
	}
	if existing, err := s.store.Association(ctx, mediumEmail, addr, s.now().UnixMilli()); err == nil {
		return StoredInvite{}, matrixerr.ThreepidInUse(existing.MXID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return StoredInvite{}, matrixerr.Unknown(fmt.Errorf("check binding: %w", err))
	}
	if err := s.allowMessage(addr, r.ClientIP); err != nil {
		return StoredInvite{}, err
	}
	eph, err := signing.GenerateKey("ed25519:0")
	if err != nil {
		return StoredInvite{}, matrixerr.Unknown(err)
	}
	params, err := json.Marshal(r.Params)
	if err != nil {
		return StoredInvite{}, matrixerr.Unknown(fmt.Errorf("encode invite params: %w", err))
	}
	inv := store.Invite{
		Token: randomString(32, alphanumeric), Medium: mediumEmail, Address: addr,
		RoomID: r.RoomID, Sender: r.Sender,
		EphemeralPublicKey:  eph.PublicBase64(),
		EphemeralPrivateKey: signing.EncodeBase64(eph.Private.Seed()),
		Params:              params,
	}
	// Render first (a value that cannot be rendered must leave nothing
	// behind), persist before mailing (a mail must never name an invite
	// that was not kept), and take the invite back if the mail cannot go.
	msg, err := s.inviteMail(inv, r.Params)
	if err != nil {
		return StoredInvite{}, err
	}
	if err := s.store.CreateInvite(ctx, inv); err != nil {
		return StoredInvite{}, matrixerr.Unknown(fmt.Errorf("store invite: %w", err))
	}
	if sendErr := s.mail.Send(ctx, msg); sendErr != nil {
		claimed, err := s.withdrawInvite(ctx, inv.Token)
		if err != nil {
			return StoredInvite{}, err
		}
		if !claimed {
			return StoredInvite{}, matrixerr.EmailSendError(sendErr)
		}
	}
	return StoredInvite{
		Token:       inv.Token,
		DisplayName: redactEmail(addr),
		PublicKeys: []PublicKey{
			{PublicKey: s.key.PublicBase64(), KeyValidityURL: s.url(r.API, "/pubkey/isvalid")},
			{PublicKey: inv.EphemeralPublicKey, KeyValidityURL: s.url(r.API, "/pubkey/ephemeral/isvalid")},
		},
	}, nil
}

// withdrawInvite deletes an invite whose mail could not be sent, so a
// failed store-invite keeps nothing. A bind of the address in between may
// have claimed it for delivery already: it is then kept (it will reach the
// new owner), and claimed is true.
func (s *Service) withdrawInvite(ctx context.Context, token string) (claimed bool, err error) {
	deleted, err := s.store.DeleteUnclaimedInvite(context.WithoutCancel(ctx), token)
	if err != nil {
		return false, matrixerr.Unknown(fmt.Errorf("withdraw invite after a failed mail: %w", err))
	}
	return !deleted, nil
}

func (s *Service) inviteMail(inv store.Invite, params map[string]any) (mail.Message, error) {
	str := func(k string) string { v, _ := params[k].(string); return oneLine(v) }
	extra := map[string]string{}
	for k, v := range params {
		if sv, ok := v.(string); ok {
			extra[oneLine(k)] = oneLine(sv)
		}
	}
	msg, err := s.templates.Invite(mail.InviteData{
		Address: inv.Address, RoomID: oneLine(inv.RoomID), RoomName: str("room_name"), RoomAlias: str("room_alias"),
		RoomAvatarURL: str("room_avatar_url"), RoomType: str("room_type"), RoomJoinRules: str("room_join_rules"),
		SenderID: oneLine(inv.Sender), SenderDisplayName: str("sender_display_name"), SenderAvatarURL: str("sender_avatar_url"),
		Token: inv.Token, ServerName: s.cfg.ServerName, WebClientLocation: str("org.matrix.web_client_location"),
		Extra: extra,
	})
	if err != nil {
		return mail.Message{}, matrixerr.Unknown(fmt.Errorf("render invite mail: %w", err))
	}
	return msg, nil
}

// oneLine folds the control characters of a value the inviter chose (CR
// and LF above all) into spaces: it may end up in the mail's Subject
// header, where a line break would end the header or start a new one.
func oneLine(v string) string {
	if !strings.ContainsFunc(v, isControl) {
		return v
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, v)
}

func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029'
}

// SignInvite is sign-ed25519: the invitee proves it holds the invite's
// ephemeral private key by having us sign {mxid, sender, token} with it.
func (s *Service) SignInvite(ctx context.Context, mxid, token, privateKey string) (map[string]any, error) {
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
