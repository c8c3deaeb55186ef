package identity

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
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
	if raw, ok := a.signPlain(key, serverName); ok {
		return raw, nil
	}
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

// signPlain is sign without the generic JSON machinery, for the usual
// association: every string printable ASCII with nothing to escape, every
// number a safe integer. Then the canonical form is the six fields written
// in key order, and the answer json.Marshal would give is the same with
// "signatures" in its place; ok is false for anything else, which sign
// leaves to SignJSON. Every bound v1 lookup is signed afresh
// (resignFromIndex), and going through encoding/json, a map and the
// canonical encoder cost a quarter again as much as the ed25519 signature
// itself (BenchmarkAssociationSign).
func (a association) signPlain(key signing.Key, serverName string) (_ []byte, ok bool) {
	if len(key.Private) != ed25519.PrivateKeySize || serverName == "" ||
		!plainJSONString(a.Address) || !plainJSONString(a.Medium) || !plainJSONString(a.MXID) ||
		!plainJSONString(serverName) || !plainJSONString(key.ID) || key.ID == "" ||
		!safeInteger(a.NotBefore) || !safeInteger(a.NotAfter) || !safeInteger(a.TS) {
		return nil, false
	}
	// The canonical form: keys in byte order ("not_after" < "not_before").
	buf := make([]byte, 0, 160+len(a.Address)+len(a.MXID)+len(serverName)+len(key.ID))
	buf = append(buf, `{"address":"`...)
	buf = append(buf, a.Address...)
	buf = append(buf, `","medium":"`...)
	buf = append(buf, a.Medium...)
	buf = append(buf, `","mxid":"`...)
	buf = append(buf, a.MXID...)
	buf = append(buf, `","not_after":`...)
	buf = strconv.AppendInt(buf, a.NotAfter, 10)
	buf = append(buf, `,"not_before":`...)
	buf = strconv.AppendInt(buf, a.NotBefore, 10)
	tsAt := len(buf) // `,"ts":N}` is the tail of both forms
	buf = append(buf, `,"ts":`...)
	buf = strconv.AppendInt(buf, a.TS, 10)
	buf = append(buf, '}')
	var sig [ed25519.SignatureSize]byte
	copy(sig[:], key.Sign(buf))
	tail := string(buf[tsAt:])
	buf = append(buf[:tsAt], `,"signatures":{"`...)
	buf = append(buf, serverName...)
	buf = append(buf, `":{"`...)
	buf = append(buf, key.ID...)
	buf = append(buf, `":"`...)
	buf = base64.RawStdEncoding.AppendEncode(buf, sig[:])
	buf = append(buf, `"}}`...)
	buf = append(buf, tail...)
	return buf, true
}

// plainJSONString reports whether s is written the same by canonical JSON
// and by json.Marshal, as itself between quotes: printable ASCII without
// the characters either escapes (json.Marshal also escapes <, > and &).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// safeInteger reports whether n is within canonical JSON's integers.
func safeInteger(n int64) bool { return n >= -(1<<53-1) && n <= 1<<53-1 }

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
