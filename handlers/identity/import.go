package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// Imports from the identity server Sigil replaces (sigil import-sydent).
// Bindings keep the signatures they were published with when those verify
// under this server's name and key (imported from the old server), so
// homeservers holding them keep verifying them; anything else is signed
// again. Each call is one store transaction and skips what exists.

// ImportedBinding is a binding as the old server stored it.
type ImportedBinding struct {
	Medium, Address, MXID   string
	TS, NotBefore, NotAfter int64
	// Signed is the association the old server published, if it kept it.
	Signed []byte
}

// ImportCounts is what an import call did.
type ImportCounts struct {
	// Imported were stored; Existing were already there (and left alone);
	// Resigned were stored with a new signature because the old one was
	// missing, not by this key, or over other fields.
	Imported, Existing, Resigned int
}

// ImportBindings stores bindings not yet stored, each with its lookup hash
// under the current pepper.
func (s *Service) ImportBindings(ctx context.Context, in []ImportedBinding) (ImportCounts, error) {
	var c ImportCounts
	pepper, err := s.pepper(ctx)
	if err != nil {
		return c, err
	}
	pairs := make([]store.ThreePID, len(in))
	for i, b := range in {
		pairs[i] = store.ThreePID{Medium: b.Medium, Address: canonicalAddress(b.Medium, b.Address)}
	}
	// What is there already needs no signature checked: a second run is
	// quick.
	have, err := s.store.StoredThreePIDs(ctx, pairs)
	if err != nil {
		return c, fmt.Errorf("import bindings: %w", err)
	}
	as := make([]store.Association, 0, len(in))
	resigned := map[store.ThreePID]bool{}
	for i, b := range in {
		if have[pairs[i]] {
			continue
		}
		a := association{
			Address: pairs[i].Address, Medium: b.Medium, MXID: b.MXID,
			NotBefore: b.NotBefore, NotAfter: b.NotAfter, TS: b.TS,
		}
		raw, ok := s.keepSignature(a, b.Signed)
		if !ok {
			if raw, err = a.sign(s.key, s.cfg.ServerName); err != nil {
				return c, err
			}
			resigned[store.ThreePID{Medium: a.Medium, Address: a.Address}] = true
		}
		as = append(as, store.Association{
			Medium: a.Medium, Address: a.Address, MXID: a.MXID, TS: a.TS, NotBefore: a.NotBefore, NotAfter: a.NotAfter,
			Signed: raw, LookupHash: signing.LookupHash(a.Address, a.Medium, pepper),
			CreatedAt: time.UnixMilli(a.TS),
		})
	}
	stored, err := s.store.ImportAssociations(ctx, as)
	if err != nil {
		return c, fmt.Errorf("import bindings: %w", err)
	}
	c.Imported, c.Existing = len(stored), len(in)-len(stored)
	for _, k := range stored {
		if resigned[k] {
			c.Resigned++
		}
	}
	return c, nil
}

// keepSignature returns the old signed association, in canonical form,
// when it is exactly a's six fields signed by this server's key under its
// name.
func (s *Service) keepSignature(a association, old []byte) ([]byte, bool) {
	if len(old) == 0 {
		return nil, false
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(old))
	dec.UseNumber()
	if dec.Decode(&obj) != nil {
		return nil, false
	}
	sigs := obj["signatures"]
	delete(obj, "signatures")
	want, err := signing.Canonical(a)
	if err != nil {
		return nil, false
	}
	got, err := signing.Canonical(obj)
	if err != nil || !bytes.Equal(got, want) {
		return nil, false
	}
	obj["signatures"] = sigs
	keys := map[string]ed25519.PublicKey{s.key.ID: s.key.Public()}
	if signing.VerifyJSON(obj, s.cfg.ServerName, keys) != nil {
		return nil, false
	}
	raw, err := signing.Canonical(obj)
	if err != nil {
		return nil, false
	}
	return raw, true
}

// ImportedInvite is a pending invite as the old server stored it.
type ImportedInvite struct {
	Medium, Address, RoomID, Sender, Token string
	ReceivedAt                             time.Time
}

// ImportInvites stores pending invites not yet stored (by token); they are
// delivered through onbind when their 3PID is bound, like any other.
func (s *Service) ImportInvites(ctx context.Context, in []ImportedInvite) (ImportCounts, error) {
	invs := make([]store.Invite, 0, len(in))
	for _, i := range in {
		address := canonicalAddress(i.Medium, i.Address)
		params, err := json.Marshal(map[string]string{
			"medium": i.Medium, "address": address, "room_id": i.RoomID, "sender": i.Sender,
		})
		if err != nil {
			return ImportCounts{}, err
		}
		invs = append(invs, store.Invite{
			Token: i.Token, Medium: i.Medium, Address: address, RoomID: i.RoomID, Sender: i.Sender,
			Params: params, CreatedAt: i.ReceivedAt,
		})
	}
	n, err := s.store.ImportInvites(ctx, invs)
	if err != nil {
		return ImportCounts{}, fmt.Errorf("import invites: %w", err)
	}
	return ImportCounts{Imported: n, Existing: len(in) - n}, nil
}

// ImportEphemeralKeys keeps the old server's ephemeral public keys valid
// for /pubkey/ephemeral/isvalid.
func (s *Service) ImportEphemeralKeys(ctx context.Context, keys []string) (ImportCounts, error) {
	n, err := s.store.ImportEphemeralKeys(ctx, keys, s.now())
	if err != nil {
		return ImportCounts{}, fmt.Errorf("import ephemeral keys: %w", err)
	}
	return ImportCounts{Imported: n, Existing: len(keys) - n}, nil
}
