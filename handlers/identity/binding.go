package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
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

// Bind publishes the 3PID of a validated session for mxid and returns the
// signed association. In the same transaction the 3PID's pending invites
// are queued for delivery to mxid's homeserver, so a bind that answers
// success has both, and one that fails has neither.
func (s *Service) Bind(ctx context.Context, sid, clientSecret, mxid string) ([]byte, error) {
	v, err := s.Validated(ctx, sid, clientSecret)
	if err != nil {
		return nil, err
	}
	if err := checkMXID(mxid); err != nil {
		return nil, err
	}
	pepper, err := s.pepper(ctx)
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	a, err := SignAssociation(s.key, s.cfg.ServerName, v.Medium, v.Address, mxid, pepper, s.now())
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	queued, err := s.store.BindAssociation(ctx, a, func(invs []store.Invite) ([]byte, error) {
		return s.onBindPayload(v.Medium, v.Address, mxid, invs)
	})
	if err != nil {
		return nil, matrixerr.Unknown(fmt.Errorf("bind: %w", err))
	}
	if queued {
		s.log.Info("onbind queued", "medium", v.Medium, "mxid", mxid)
		s.wakeOnBind()
	}
	return a.Signed, nil
}

// PepperKey is the setting that holds the hashed-lookup pepper.
const PepperKey = "lookup_pepper"

// pepper returns the current lookup pepper, creating one on first use.
func (s *Service) pepper(ctx context.Context) (string, error) {
	p, err := s.store.SettingOrInit(ctx, PepperKey, func() string { return randomString(32, alphanumeric) })
	if err != nil {
		return "", fmt.Errorf("lookup pepper: %w", err)
	}
	return p, nil
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
func (s *Service) currentPepper(ctx context.Context) (string, error) {
	s.peppers.mu.Lock()
	defer s.peppers.mu.Unlock()
	if now := time.Now(); s.peppers.value != "" && now.Before(s.peppers.until) {
		return s.peppers.value, nil
	}
	p, err := s.pepper(ctx)
	if err != nil {
		if s.peppers.value != "" && Unavailable(err) {
			// The database is down: the last pepper read is the best
			// answer (a rotation needs the database too).
			return s.peppers.value, nil
		}
		return "", err
	}
	s.peppers.value, s.peppers.until = p, time.Now().Add(pepperCacheTTL)
	return p, nil
}

// Pepper is the current lookup pepper (hash_details).
func (s *Service) Pepper(ctx context.Context) (string, error) {
	p, err := s.currentPepper(ctx)
	if err != nil {
		return "", matrixerr.Unknown(err)
	}
	return p, nil
}

// RotatePepper replaces the lookup pepper (with a random one when pepper is
// empty) and rehashes every binding under it. Clients holding the old
// pepper get M_INVALID_PEPPER and fetch the new one from hash_details.
func (s *Service) RotatePepper(ctx context.Context, pepper string) (int, error) {
	if pepper == "" {
		pepper = randomString(32, alphanumeric)
	}
	for _, r := range pepper {
		if !strings.ContainsRune(alphanumeric, r) {
			return 0, fmt.Errorf("a lookup pepper must match [a-zA-Z0-9]+")
		}
	}
	if err := s.store.SetSetting(ctx, PepperKey, pepper); err != nil {
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
