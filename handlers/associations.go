package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// associationLifetime is how long a binding is asserted to hold; like
// Sydent, effectively until it is unbound.
const associationLifetime = 100 * 365 * 24 * time.Hour

// association is exactly the signed object homeservers verify: Dendrite
// re-marshals these six fields before checking the signature, so nothing
// may be added or left out.
type association struct {
	Address   string `json:"address"`
	Medium    string `json:"medium"`
	MXID      string `json:"mxid"`
	NotBefore int64  `json:"not_before"`
	NotAfter  int64  `json:"not_after"`
	TS        int64  `json:"ts"`
}

// sign returns the signed association as stored and served.
func (a association) sign(key signing.Key, serverName string) ([]byte, error) {
	signed, err := signing.SignJSON(a, serverName, key)
	if err != nil {
		return nil, fmt.Errorf("sign association: %w", err)
	}
	raw, err := json.Marshal(signed)
	if err != nil {
		return nil, fmt.Errorf("encode association: %w", err)
	}
	return raw, nil
}

// LookupPepperKey is the setting that holds the hashed-lookup pepper.
const LookupPepperKey = "lookup_pepper"

// pepper returns the current lookup pepper, creating one on first use.
func (s *Server) pepper(ctx context.Context) (string, error) {
	p, err := s.store.SettingOrInit(ctx, LookupPepperKey, func() string { return randomString(32, alphanumeric) })
	if err != nil {
		return "", fmt.Errorf("lookup pepper: %w", err)
	}
	return p, nil
}

// SignAssociation builds the binding of medium/address to mxid as it is
// stored: the signed association served by lookups (exactly the six fields
// homeservers verify) and its lookup hash under pepper. The load benchmark
// seeds with it too, so what it measures is what a bind stores.
func SignAssociation(key signing.Key, serverName, medium, address, mxid, pepper string, now time.Time) (store.Association, error) {
	a := association{
		Address: address, Medium: medium, MXID: mxid,
		NotBefore: now.UnixMilli(), NotAfter: now.Add(associationLifetime).UnixMilli(), TS: now.UnixMilli(),
	}
	raw, err := a.sign(key, serverName)
	if err != nil {
		return store.Association{}, err
	}
	return store.Association{
		Medium: medium, Address: address, MXID: mxid,
		TS: a.TS, NotBefore: a.NotBefore, NotAfter: a.NotAfter,
		Signed: raw, LookupHash: signing.LookupHash(address, medium, pepper), CreatedAt: now,
	}, nil
}

// publish signs and stores the binding of medium/address to mxid and
// returns the signed association as served to clients.
func (s *Server) publish(ctx context.Context, medium, address, mxid string) ([]byte, error) {
	pepper, err := s.pepper(ctx)
	if err != nil {
		return nil, err
	}
	a, err := SignAssociation(s.key, s.cfg.ServerName, medium, address, mxid, pepper, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.store.PutAssociation(ctx, a); err != nil {
		return nil, fmt.Errorf("store association: %w", err)
	}
	return a.Signed, nil
}

// bind publishes the 3PID of a validated session for mxid.
func (s *Server) bind(ctx context.Context, sid, clientSecret, mxid string) ([]byte, error) {
	sess, err := s.validatedSession(ctx, sid, clientSecret)
	if err != nil {
		return nil, err
	}
	if err := checkMXID(mxid); err != nil {
		return nil, err
	}
	raw, err := s.publish(ctx, sess.Medium, sess.Address, mxid)
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	s.afterBind(ctx, sess.Medium, sess.Address, mxid)
	return raw, nil
}

// afterBind hands pending invites for the 3PID to its new owner's
// homeserver. Delivery is queued; the bind answer never waits for it.
func (s *Server) afterBind(ctx context.Context, medium, address, mxid string) {
	if err := s.queueOnBind(ctx, medium, address, mxid); err != nil {
		s.log.Error("queue onbind", "medium", medium, "mxid", mxid, "err", err)
	}
}

func bindResponse(raw []byte) (gen.Bind200JSONResponse, error) {
	var r gen.Bind200JSONResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, matrixerr.Unknown(fmt.Errorf("decode stored association: %w", err))
	}
	return r, nil
}

// GetValidated3pid is GET .../3pid/getValidated3pid.
func (s *Server) GetValidated3pid(ctx context.Context, req gen.GetValidated3pidRequestObject) (gen.GetValidated3pidResponseObject, error) {
	sess, err := s.validatedSession(ctx, req.Params.Sid, req.Params.ClientSecret)
	if err != nil {
		return nil, err
	}
	at := int(sess.ValidatedAt.UnixMilli())
	return gen.GetValidated3pid200JSONResponse{Medium: &sess.Medium, Address: &sess.Address, ValidatedAt: &at}, nil
}

// Bind is POST /_matrix/identity/api/v1/bind, the seed's path.
func (s *Server) Bind(ctx context.Context, req gen.BindRequestObject) (gen.BindResponseObject, error) {
	raw, err := s.bind(ctx, req.Body.Sid, req.Body.ClientSecret, req.Body.Mxid)
	if err != nil {
		return nil, err
	}
	return bindResponse(raw)
}

// Bind3pid is POST /_matrix/identity/api/v1/3pid/bind, the path homeservers call.
func (s *Server) Bind3pid(ctx context.Context, req gen.Bind3pidRequestObject) (gen.Bind3pidResponseObject, error) {
	raw, err := s.bind(ctx, req.Body.Sid, req.Body.ClientSecret, req.Body.Mxid)
	if err != nil {
		return nil, err
	}
	r, err := bindResponse(raw)
	return gen.Bind3pid200JSONResponse(r), err
}

// GetValidated3pidV2 is GET /_matrix/identity/v2/3pid/getValidated3pid.
func (s *Server) GetValidated3pidV2(ctx context.Context, req gen.GetValidated3pidV2RequestObject) (gen.GetValidated3pidV2ResponseObject, error) {
	sess, err := s.validatedSession(ctx, req.Params.Sid, req.Params.ClientSecret)
	if err != nil {
		return nil, err
	}
	return gen.GetValidated3pidV2200JSONResponse{Medium: sess.Medium, Address: sess.Address, ValidatedAt: sess.ValidatedAt.UnixMilli()}, nil
}

// BindV2 is POST /_matrix/identity/v2/3pid/bind: only for the token's own
// user, which is why v2 bind is authenticated at all (MSC2140).
func (s *Server) BindV2(ctx context.Context, req gen.BindV2RequestObject) (gen.BindV2ResponseObject, error) {
	b := req.Body
	if err := requireSelf(ctx, b.Mxid, "mxid"); err != nil {
		return nil, err
	}
	raw, err := s.bind(ctx, b.Sid, b.ClientSecret, b.Mxid)
	if err != nil {
		return nil, err
	}
	return convertJSON[gen.BindV2200JSONResponse](json.RawMessage(raw))
}
